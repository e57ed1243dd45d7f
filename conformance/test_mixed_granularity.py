"""Scale granularities mixed at one shape in one process, in several orders.

A kernel library that caches its compiled primitive under a key that lacks the scale
granularity (oneDNN's fp8 key carries the scale *numels* only, ``docs/vllm-0.33-notes.md``
§6.2) hands a later call the primitive built for another granularity at the same shape: the
first case of a shape passes, the next ones read their scales wrongly. The grid's one-case-
per-test runs may never show it (a case's shape neighbours run on other workers or in another
order), so this module runs every granularity of one op shape and one layer shape on the same
adapter, in three fixed orders, and judges each result.
"""

from __future__ import annotations

import pytest

from golden.cases import Case
from golden.store import StoreError
from kernel.base import Unsupported

from .checks import judge, rerun_command
from .matrix import GRANULARITY_ORDERS as ORDERS
from .matrix import GRANULARITY_SHAPE, granularity_cases
from .plugin import case_data

M, N, K = GRANULARITY_SHAPE


def _outcome(adapter, device, seed, store, c: Case):
    """None when the adapter refuses ``c`` at run time; else the failed checks ([] = pass)."""
    try:
        data = case_data(c, seed, store)
    except StoreError as exc:
        return [f"golden-store: {exc}"]
    try:
        run = adapter.run(data, device)
    except Unsupported:
        return None
    except Exception as exc:  # a crash fails this case, as in test_scaled_mm
        return [f"kernel-raised: {type(exc).__name__}: {str(exc)[:200]}"]
    return judge(data, run.values, adapter.profile(device)).checks


@pytest.mark.parametrize("order", list(ORDERS))
def test_mixed_granularity(order, adapter, device, seed, golden_store, pytestconfig):
    """Every scale granularity the adapter supports at one shape passes when run one after
    another on the same adapter (no rebuilt state) in this order: a stale primitive cached
    for another granularity at the same shape fails the later cases."""
    grid_name = pytestconfig.option.grid
    supported = [c for c in granularity_cases(grid_name) if adapter.why_not(c, device) is None]
    results = [(c, _outcome(adapter, device, seed, golden_store, c))
               for c in ORDERS[order](supported)]
    ran = [(c, checks) for c, checks in results if checks is not None]
    if len(ran) < 2:
        pytest.skip(f"{adapter.name}/{device}: {len(ran)} scale granularit"
                    f"{'y' if len(ran) == 1 else 'ies'} at M{M}xN{N}xK{K} supported; mixing "
                    "needs at least 2")
    bad = [(i, c.id, checks) for i, (c, checks) in enumerate(ran) if checks]
    if bad:
        emu = " --emulate-xpu" if adapter.emulated else ""
        lines = [f"  #{i} {cid}: {', '.join(checks)}\n    alone: "
                 f"{rerun_command(cid, adapter.name, device, seed, adapter.emulated)}"
                 for i, cid, checks in bad]
        pytest.fail(f"{len(bad)} of {len(ran)} granularities at one shape failed in order "
                    f"{order!r} (position, case id, failed checks; a case that passes alone "
                    "depends on what ran before it):\n" + "\n".join(lines)
                    + f"\n  rerun: python -m pytest conformance/test_mixed_granularity.py "
                      f"--backend={adapter.name} --device={device} --grid={grid_name} "
                      f"--seed={seed}{emu} "
                      f"-k {order} -p no:randomly", pytrace=False)
