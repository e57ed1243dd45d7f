"""Conformance of the selected backend on every case of the grid (op and layer level)."""

from __future__ import annotations

import pytest

from golden.store import StoreError
from kernel.base import Unsupported

from .checks import judge, rerun_command
from .plugin import case_data


def test_scaled_mm(case, adapter, device, seed, golden_store, record_property):
    """The kernel's output is within the declared profile's bound of the exact reference."""
    reason = adapter.why_not(case, device)
    if reason:
        pytest.skip(f"{adapter.name}/{device}: {reason}")
    rerun = rerun_command(case.id, adapter.name, device, seed)
    try:
        data = case_data(case, seed, golden_store)
    except StoreError as exc:
        pytest.fail(f"golden store: {exc}\n  rerun without the store: {rerun} --no-golden",
                    pytrace=False)
    try:
        run = adapter.run(data, device)
    except Unsupported as exc:
        pytest.skip(f"{adapter.name}/{device}: {exc}")
    except Exception as exc:  # a crashing kernel costs this case only
        pytest.fail(f"case {case.id}: kernel raised {type(exc).__name__}: {exc}\n  rerun: {rerun}",
                    pytrace=False)
    verdict = judge(data, run.values, adapter.profile(device))
    for key, value in verdict.metrics.items():
        record_property(key, value)
    if not verdict.passed:
        pytest.fail(verdict.message(case.id, rerun), pytrace=False)
