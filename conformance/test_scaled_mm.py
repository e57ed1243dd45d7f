"""Conformance of the selected backend on every case of the grid (op and layer level)."""

from __future__ import annotations

import pytest

from golden.store import StoreError
from kernel.base import Unsupported

from .checks import judge, rerun_command
from .plugin import case_data


def test_scaled_mm(case, adapter, device, seed, golden_store, reference_dot, timing_reps,
                   record_property):
    """The kernel's output is within the declared profile's bound of the exact reference."""
    reason = adapter.why_not(case, device)
    if reason:
        pytest.skip(f"{adapter.name}/{device}: {reason}")
    rerun = rerun_command(case.id, adapter.name, device, seed, adapter.emulated)
    record_property("rerun", rerun)
    try:
        data = case_data(case, seed, golden_store, reference_dot, tally=True)
    except StoreError as exc:
        record_property("failed_checks", "golden-store")
        pytest.fail(f"golden store: {exc}\n  rerun without the store: {rerun} --no-golden",
                    pytrace=False)
    try:
        run = adapter.run(data, device, reps=timing_reps)
    except Unsupported as exc:
        pytest.skip(f"{adapter.name}/{device}: {exc}")
    except Exception as exc:  # a crashing kernel costs this case only
        record_property("failed_checks", "kernel-raised")
        pytest.fail(f"case {case.id}: kernel raised {type(exc).__name__}: {exc}\n  rerun: {rerun}",
                    pytrace=False)
    verdict = judge(data, run.values, adapter.profile(device))
    for key, value in verdict.metrics.items():
        record_property(key, value)
    flops = 2 * case.M * case.N * case.K
    record_property("kernel_s", run.seconds)
    record_property("tflops", flops / run.seconds / 1e12 if run.seconds and flops else None)
    if not verdict.passed:
        record_property("failed_checks", ",".join(verdict.checks))
        note = f"\n  kernel note: {run.note}" if run.note else ""
        pytest.fail(verdict.message(case.id, rerun) + note, pytrace=False)
