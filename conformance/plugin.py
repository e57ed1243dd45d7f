"""pytest hooks of the conformance suite: options, validation, header, case parametrization,
and the skip-reason summary. Registered by the root ``conftest.py``."""

from __future__ import annotations

import gc
import os
import sys
from collections import Counter

import pytest

from golden.cases import Case, CaseError, build
from golden.store import Store, StoreError, output_hash

from .matrix import grid, grid_names
from .resolution import deferrable, resolve
from .tracking import EMULATED_PREFIX

__all__ = ["addoption", "configure", "report_header", "generate_tests", "case_data", "SkipTally",
           "InputTally", "IdleHypothesis", "INPUTS", "reads_store",
           "share_cores", "thread_share", "passive_waits", "quick_exit"]


def addoption(parser) -> None:
    """``--backend``, ``--device``, ``--grid``, ``--seed``, ``--case``."""
    g = parser.getgroup("fp8 conformance")
    g.addoption("--backend", default=None,
                help="kernel under test (default: the best on this machine; see README)")
    g.addoption("--device", default=None, help="cpu, cuda or xpu (default: backend's first)")
    g.addoption("--grid", default="default", help="case grid: " + ", ".join(grid_names()))
    g.addoption("--seed", default=0, type=int, help="input seed (default 0)")
    g.addoption("--case", default=None, help="run only this case id (see a failure's rerun line)")
    g.addoption("--golden", dest="golden", action="store_true", default=True,
                help="read inputs and expected outputs from the golden store where it covers "
                     "the case (the default)")
    g.addoption("--no-golden", dest="golden", action="store_false",
                help="compute every case with the reference instead of reading the store")
    g.addoption("--report-dir", default="reports",
                help="where tolerance.json/.md/.html go (default reports/)")
    g.addoption("--shard", default=None, metavar="I/N",
                help="run only shard I of N (deterministic by test id); join the shard reports "
                     "with `python -m conformance.report merge`")
    g.addoption("--timing-reps", default=None, type=int, metavar="R",
                help="timed kernel calls per case after one warm-up, median reported "
                     "(default: 10 on cuda/xpu, 3 on cpu; 0 times the single call)")
    g.addoption("--emulate-xpu", action="store_true", default=False,
                help="run backends that call vllm-xpu-kernels' torch.ops._xpu_C (vllm:XPU* "
                     "classes, xpu-ops) on CPU through the op contract emulation; results are "
                     "labelled emulated, never XPU")
    g.addoption("--progress-interval", default=30.0, type=float, metavar="S",
                help="seconds between worst-so-far progress lines (default 30; 0: none)")
    g.addoption("--reference-device", default="numpy", metavar="D",
                help="where computed cases' exact GEMMs run: numpy (default), or cpu, cuda, "
                     "xpu through torch in float64, where that is exact (e4m3 pairs; "
                     "NumPy elsewhere); the bits are the same")


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_cores(config) -> int | None:
    """On the xdist controller, before the workers start, give each worker its share of the
    cores: the thread-count variables that torch (OpenMP/oneDNN) and NumPy's BLAS read when a
    worker imports them. A value the user set is kept. Returns the share, or None without -n.

    Otherwise each of the one-per-core workers starts one thread per core in both libraries.
    Measured on this 2-core CPU, the default grid on torch took 51.7 s with ``-n 0``, 88.7 s
    with ``-n auto``, and 28.4 s with ``-n auto`` and one thread per worker."""
    workers = getattr(config.option, "numprocesses", None)
    if not isinstance(workers, int) or workers <= 0 or os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return thread_share(workers)


def passive_waits() -> None:
    """Let OpenMP threads sleep, not spin, between parallel regions (``OMP_WAIT_POLICY``,
    kept where the user set it); before torch loads its OpenMP runtime, or without effect.

    A CPU kernel's threads otherwise spin for milliseconds after each call, on the cores the
    reference and the judge need next. Measured on this 2-core CPU over the default grid's
    small cases (``python -m conformance.bench fixed-cost``, spinning then sleeping): torch's
    kernel call 1.19-1.50 -> 0.43-0.53 ms, the judge 0.84-1.04 -> 0.60-0.67 ms, a computed
    case 8.2-8.8 -> 6.9-7.5 ms; the fixed cost 2.82-3.15 -> 2.25-2.48 ms."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def thread_share(workers: int) -> int:
    """Set the thread-count variables to this process's children's share of the cores (kept
    where already set); for any command that starts ``workers`` worker processes."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    return threads


def configure(config) -> None:
    """Validate options early (a usage error lists the valid values) and fix the defaults;
    the xdist controller may resolve the backend later (``conformance.resolution``)."""
    passive_waits()
    share_cores(config)
    opt = config.option
    if opt.grid not in grid_names():
        raise pytest.UsageError(f"--grid={opt.grid!r} is unknown; valid grids: {', '.join(grid_names())}")
    if opt.device is not None and opt.device not in ("cpu", "cuda", "xpu"):
        raise pytest.UsageError(f"--device={opt.device!r} is unknown; valid devices: cpu, cuda, xpu")
    if opt.timing_reps is not None and opt.timing_reps < 0:
        raise pytest.UsageError(f"--timing-reps={opt.timing_reps}: must be >= 0")
    if opt.case is not None:
        try:
            Case.from_id(opt.case)
        except CaseError as exc:
            raise pytest.UsageError(f"--case: {exc}") from None
    if not deferrable(config):
        resolve(config)
    config._fp8_store = None
    if opt.golden:
        try:
            store = Store()
            _ = store.manifest  # read and check now: a bad manifest is a setup error
        except StoreError as exc:
            raise pytest.UsageError(f"golden store: {exc} (or run with --no-golden)") from None
        config._fp8_store = store


INPUTS = {"read": Counter(), "computed": Counter()}  # this process's case inputs, by case id


def _store_entry(case: Case, seed: int, store: Store | None) -> dict | None:
    """The store's manifest entry for ``case`` (None: not there, or generated at another seed)."""
    return store.entry(case.id) if store is not None and seed == store.seed else None


def reads_store(case: Case, seed: int, store: Store | None) -> bool:
    """Whether :func:`case_data` reads the case from a stored file (else it computes it)."""
    entry = _store_entry(case, seed, store)
    return entry is not None and entry.get("kind") == "stored"


def case_data(case: Case, seed: int, store: Store | None, dot=None, tally: bool = False):
    """The case's inputs and reference: from the store where it holds the case (stored file,
    or the hash of the reference output for hash-only cases), else computed (``dot``: the
    ``--reference-device`` GEMM). The conformance tests pass ``tally=True`` to count it in
    :data:`INPUTS` (see :class:`InputTally`)."""
    stored = reads_store(case, seed, store)
    if tally:
        INPUTS["read" if stored else "computed"][(case.id, seed)] += 1
    if stored:
        return store.load(case)
    data = build(case, seed, dot=dot, draws=getattr(dot, "draws", None),
                 codec=getattr(dot, "codec", None))
    entry = _store_entry(case, seed, store)  # a hash-only case's output hash
    if entry is not None and output_hash(data.expected, case.out) != entry.get("sha256"):
        raise StoreError(f"case {case.id}: the reference output's hash differs from "
                         f"{store.manifest_path} (the reference changed; if on purpose, bump "
                         "golden.REFERENCE_VERSION and run `python -m golden generate`)")
    return data


def report_header(config) -> list[str]:
    resolve(config)  # a deferred xdist controller resolves here, its workers already started
    opt = config.option
    adapter = config._fp8_adapter
    store = config._fp8_store
    golden = (f"golden store ({len(store.manifest['cases'])} cases)" if store is not None
              else "no golden store (computed)")
    emu = " EMULATED (XPU op contract on CPU, not XPU hardware)" if adapter.emulated else ""
    lines = [f"fp8 conformance: backend={opt.backend}{emu} device={opt.device} grid={opt.grid} "
             f"seed={opt.seed}" + (f" case={opt.case}" if opt.case else "") + f"; {golden}"]
    dot = getattr(config, "_fp8_dot", None)
    if dot is not None:
        lines.append(f"  reference: {dot.describe()}")
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
    resolve(metafunc.config)
    prefix = EMULATED_PREFIX if metafunc.config._fp8_adapter.emulated else ""
    metafunc.parametrize("case", cases, ids=[prefix + c.id for c in cases])


def ignore_coverage(collection_path, config) -> bool | None:
    """Modules that are not per-case: the store-coverage check belongs to full `default`-grid
    runs only; the mixed-granularity sequences and the profile-vs-fingerprint check to
    whole-grid runs other than `smoke` (not ``--case`` reruns, whose counts they would
    otherwise change)."""
    opt = config.option
    if collection_path.name == "test_golden_store.py":
        return True if (opt.grid != "default" or opt.case) else None
    if collection_path.name == "test_mixed_granularity.py":
        return True if (opt.case or opt.grid == "smoke") else None
    if collection_path.name == "test_profile.py":
        return True if (opt.case or opt.grid == "smoke") else None
    return None


class InputTally:
    """How many cases' inputs were read from the store and computed, over all workers, and
    any case computed more than once (the terminal summary's ``case inputs`` line)."""

    def __init__(self, config):
        self.config = config
        self.counts = {k: Counter() for k in INPUTS}

    def pytest_sessionfinish(self, session):
        if hasattr(self.config, "workerinput"):  # a worker: hand the counts to the controller
            self.config.workeroutput["fp8_inputs"] = {
                k: [[cid, seed, n] for (cid, seed), n in v.items()] for k, v in INPUTS.items()}
        else:
            for k, v in INPUTS.items():
                self.counts[k].update(v)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """Add a finished worker's counts (xdist's hook: never called without it)."""
        for k, rows in getattr(node, "workeroutput", {}).get("fp8_inputs", {}).items():
            self.counts[k].update({(cid, seed): n for cid, seed, n in rows})

    def line(self) -> str | None:
        read, computed = self.counts["read"], self.counts["computed"]
        if not (read or computed):
            return None
        twice = [(cid, n) for (cid, _), n in computed.most_common() if n > 1]
        text = (f"case inputs: {len(read)} read from the golden store, {len(computed)} "
                f"computed; {len(twice)} computed more than once")
        return text + (f" (e.g. {twice[0][1]}x {twice[0][0]})" if twice else "")

    def pytest_terminal_summary(self, terminalreporter):
        text = self.line()
        if text:
            terminalreporter.write_line(text)


def quick_exit() -> None:
    """Move every object alive now to the collector's permanent generation (``gc.freeze``).

    Called when the run is over (its files written and closed): the interpreter's own last
    collection then skips them. With torch loaded that collection was 0.3 of the 0.45 s a
    process took to exit on this CPU, paid by the serial run, by each xdist worker and by
    the controller, which waits for its workers to exit."""
    gc.freeze()


class IdleHypothesis:
    """Unregisters Hypothesis's pytest plugin at the end of a run in which no test imported
    ``hypothesis`` (every conformance run), in each process and, under xdist, on the
    controller once no worker did. That plugin's terminal summary imports the library
    whatever ran: measured on this 2-core CPU, 0.3 s at the end of every run and 1 s at the
    end of each xdist worker. A run of the suite's own tests keeps the plugin."""

    NAME = "hypothesispytest"

    def __init__(self, config):
        self.config = config
        self.used = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        used = self.used or "hypothesis" in sys.modules
        if hasattr(self.config, "workerinput"):
            self.config.workeroutput["fp8_hypothesis"] = used
        manager = self.config.pluginmanager
        if not used and manager.has_plugin(self.NAME):
            manager.unregister(name=self.NAME)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """A worker that imported hypothesis, or said nothing (it crashed), keeps the plugin
        for the controller's summary (xdist's hook: never called without it)."""
        self.used |= getattr(node, "workeroutput", {}).get("fp8_hypothesis", True)


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
