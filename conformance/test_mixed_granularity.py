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


def _outcome(adapter, device, data):
    """None when the adapter refuses the case at run time; else the failed checks ([] = pass).
    ``data`` is the case's data, or the StoreError that reading it raised."""
    if isinstance(data, StoreError):
        return [f"golden-store: {data}"]
    try:
        run = adapter.run(data, device)
    except Unsupported:
        return None
    except Exception as exc:  # a crash fails this case, as in test_scaled_mm
        return [f"kernel-raised: {type(exc).__name__}: {str(exc)[:200]}"]
    return judge(data, run.values, adapter.profile(device)).checks


def _data(c: Case, seed, store, dot):
    try:
        return case_data(c, seed, store, dot, tally=True)
    except StoreError as exc:
        return exc


def test_mixed_granularity(adapter, device, seed, golden_store, reference_dot, pytestconfig):
    """Every scale granularity the adapter supports at one shape passes when run one after
    another on the same adapter (no rebuilt state) in each of the orders: a stale primitive
    cached for another granularity at the same shape fails the later cases. One test for the
    three orders, so that each case's inputs are computed once."""
    grid_name = pytestconfig.option.grid
    supported = [c for c in granularity_cases(grid_name) if adapter.why_not(c, device) is None]
    datas = {c.id: _data(c, seed, golden_store, reference_dot) for c in supported}
    bad, ran_any = [], 0
    for order, arrange in ORDERS.items():
        results = [(c, _outcome(adapter, device, datas[c.id])) for c in arrange(supported)]
        ran = [(c, checks) for c, checks in results if checks is not None]
        ran_any = max(ran_any, len(ran))
        bad += [(order, i, c.id, checks) for i, (c, checks) in enumerate(ran) if checks]
    if ran_any < 2:
        pytest.skip(f"{adapter.name}/{device}: {ran_any} scale granularit"
                    f"{'y' if ran_any == 1 else 'ies'} at M{M}xN{N}xK{K} supported; mixing "
                    "needs at least 2")
    if bad:
        emu = " --emulate-xpu" if adapter.emulated else ""
        lines = [f"  {order} #{i} {cid}: {', '.join(checks)}\n    alone: "
                 f"{rerun_command(cid, adapter.name, device, seed, adapter.emulated)}"
                 for order, i, cid, checks in bad]
        pytest.fail(f"{len(bad)} runs of {ran_any} granularities at one shape failed, in the "
                    f"orders {', '.join(ORDERS)} (order, position, case id, failed checks; a "
                    "case that passes alone depends on what ran before it):\n"
                    + "\n".join(lines)
                    + f"\n  rerun: python -m pytest conformance/test_mixed_granularity.py "
                      f"--backend={adapter.name} --device={device} --grid={grid_name} "
                      f"--seed={seed}{emu} -p no:randomly", pytrace=False)
