"""Which backend, adapter, device, timing reps and reference GEMM a run uses, and when the
xdist controller works them out.

Resolving the default backend imports torch (1.7 s on the 2-core CPU of the README's
figures). The xdist controller runs no case, so in a run that names no backend it waits:
its workers start meanwhile and each resolves the same default for itself. The controller
resolves later only where it needs the answer: the report header, when shown, or the report
at the end; there it takes the first worker's answer (``adopt``), and resolves itself only
if no worker gave one. Options whose resolution can fail (``--backend``, ``--emulate-xpu``,
``--reference-device`` other than numpy) are resolved at once, so their errors stay usage
errors before any worker starts.
"""

from __future__ import annotations

import os

import pytest

from kernel.registry import default_backend_and_device, enable_xpu_emulation, get_backend

from .device_reference import make_dot

__all__ = ["deferrable", "resolve", "resolved", "worker_facts", "adopt"]


def deferrable(config) -> bool:
    """Whether this process may leave resolution for later: the xdist controller of a run
    whose options cannot fail to resolve."""
    opt = config.option
    workers = getattr(opt, "numprocesses", None)
    return (isinstance(workers, int) and workers > 0 and not os.environ.get("PYTEST_XDIST_WORKER")
            and opt.backend is None and not opt.emulate_xpu and opt.reference_device == "numpy")


def resolved(config) -> bool:
    """Whether this process has resolved (or adopted) the backend."""
    return getattr(config, "_fp8_adapter", None) is not None or hasattr(config, "_fp8_run")


def resolve(config) -> None:
    """Fix ``--backend``, ``--device`` and ``--timing-reps`` defaults and set
    ``config._fp8_adapter`` and ``config._fp8_dot``; once (later calls do nothing).
    Usage errors name the option and its valid values."""
    if getattr(config, "_fp8_adapter", None) is not None:
        return
    opt = config.option
    if opt.backend is None:
        opt.backend, auto_device = default_backend_and_device()
        opt.device = opt.device or auto_device
    try:
        adapter = get_backend(opt.backend)
    except ValueError as exc:
        raise pytest.UsageError(f"--backend={opt.backend!r}: {exc}") from None
    if opt.emulate_xpu:
        try:
            enable_xpu_emulation(adapter, opt.backend)
        except (ValueError, RuntimeError) as exc:
            raise pytest.UsageError(str(exc)) from None
    if opt.device is None:
        devs = adapter.devices()
        opt.device = devs[0] if devs else "cpu"
    if opt.timing_reps is None:
        opt.timing_reps = 10 if opt.device in ("cuda", "xpu") else 3
    try:
        config._fp8_dot = make_dot(opt.reference_device)
    except (ValueError, ImportError) as exc:
        raise pytest.UsageError(f"--reference-device: {exc}") from None
    config._fp8_adapter = adapter


def worker_facts(config, run: dict) -> dict:
    """What a worker hands the controller: its resolved options and ``run`` (the envelope's
    fields about the kernel and device, ``report.envelope.run_fields``)."""
    opt = config.option
    return {"backend": opt.backend, "device": opt.device, "timing_reps": opt.timing_reps,
            "run": run}


def adopt(config, facts: dict) -> None:
    """On a controller that has not resolved: take a worker's ``worker_facts`` as its own
    (the options, and ``config._fp8_run`` for the envelope)."""
    if resolved(config):
        return
    opt = config.option
    opt.backend, opt.device, opt.timing_reps = facts["backend"], facts["device"], facts["timing_reps"]
    config._fp8_run = facts["run"]
