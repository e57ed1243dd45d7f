"""pytest hooks of the conformance suite: options, validation, header, case parametrization,
and the skip-reason summary. Registered by the root ``conftest.py``."""

from __future__ import annotations

from collections import Counter

import pytest

from golden.cases import Case, CaseError
from kernel.registry import backend_names, default_backend_and_device, get_backend

from .matrix import grid, grid_names

__all__ = ["addoption", "configure", "report_header", "generate_tests", "SkipTally"]


def addoption(parser) -> None:
    """``--backend``, ``--device``, ``--grid``, ``--seed``, ``--case``."""
    g = parser.getgroup("fp8 conformance")
    g.addoption("--backend", default=None,
                help="kernel under test (default: the best on this machine; see README)")
    g.addoption("--device", default=None, help="cpu, cuda or xpu (default: backend's first)")
    g.addoption("--grid", default="default", help="case grid: " + ", ".join(grid_names()))
    g.addoption("--seed", default=0, type=int, help="input seed (default 0)")
    g.addoption("--case", default=None, help="run only this case id (see a failure's rerun line)")


def configure(config) -> None:
    """Validate options early (a usage error lists the valid values) and fix the defaults."""
    opt = config.option
    if opt.grid not in grid_names():
        raise pytest.UsageError(f"--grid={opt.grid!r} is unknown; valid grids: {', '.join(grid_names())}")
    if opt.backend is None:
        opt.backend, auto_device = default_backend_and_device()
        opt.device = opt.device or auto_device
    if opt.backend not in backend_names():
        raise pytest.UsageError(
            f"--backend={opt.backend!r} is unknown; valid backends: {', '.join(backend_names())}")
    adapter = get_backend(opt.backend)
    if opt.device is None:
        devs = adapter.devices()
        opt.device = devs[0] if devs else "cpu"
    if opt.device not in ("cpu", "cuda", "xpu"):
        raise pytest.UsageError(f"--device={opt.device!r} is unknown; valid devices: cpu, cuda, xpu")
    if opt.case is not None:
        try:
            Case.from_id(opt.case)
        except CaseError as exc:
            raise pytest.UsageError(f"--case: {exc}") from None
    config._fp8_adapter = adapter


def report_header(config) -> list[str]:
    opt = config.option
    adapter = config._fp8_adapter
    lines = [f"fp8 conformance: backend={opt.backend} device={opt.device} grid={opt.grid} "
             f"seed={opt.seed}" + (f" case={opt.case}" if opt.case else "")]
    why = adapter.why_unavailable(opt.device)
    if why:
        lines.append(f"  NOTE: {why}; its cases will be skipped")
    else:
        lines.append(f"  accumulation profile: {adapter.profile(opt.device).describe()}")
    return lines


def generate_tests(metafunc) -> None:
    """Parametrize every test that takes ``case`` over the selected grid (or --case)."""
    if "case" not in metafunc.fixturenames:
        return
    opt = metafunc.config.option
    cases = [Case.from_id(opt.case)] if opt.case else grid(opt.grid)
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


class SkipTally:
    """Counts skip reasons on the controller (works under xdist) for the terminal summary."""

    def __init__(self):
        self.reasons = Counter()

    def pytest_runtest_logreport(self, report):
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
            self.reasons[reason] += 1

    def pytest_terminal_summary(self, terminalreporter):
        if not self.reasons:
            return
        terminalreporter.section("skips by reason")
        for reason, n in self.reasons.most_common():
            terminalreporter.write_line(f"{n:6d}  {reason}")
