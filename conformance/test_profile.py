"""The backend's declared accumulation profile against its measured fingerprint.

The bound trusts the profile (``golden.bounds``); this test measures the arithmetic it
describes with the probes (``conformance.probe``) on the device under test and fails when
the profile claims more than was measured (``conformance.profile_check``): more accumulator
bits, a shorter fp32 block, round-to-nearest output, or exactness. One test per whole-grid
run (not ``smoke``, not ``--case``), in a worker like any case, so a kernel that crashes on
the probes costs this test, not the report; the fingerprint and the verdict go into the
report's ``fingerprint`` and ``profile_check`` tables.
"""

from __future__ import annotations

import json

import pytest

from .probe import fingerprint
from .profile_check import OVERCLAIMS, UNMEASURED, fingerprint_tables


def test_profile_within_fingerprint(adapter, device, pytestconfig, record_property):
    why = adapter.why_unavailable(device)
    if why:
        pytest.skip(why)
    backend = pytestconfig.option.backend
    fp = fingerprint(backend, device, adapter=adapter)
    tables = fingerprint_tables(adapter, backend, device, fp)
    # the tracker moves these into the report's tables (conformance/tracking.py)
    record_property("tables", json.dumps(tables))
    (check,) = tables["profile_check"]
    if check["status"] == UNMEASURED:
        pytest.skip(f"profile {check['profile']!r} not checked: {check['problems']}")
    emu = " --emulate-xpu" if adapter.emulated else ""
    assert check["status"] != OVERCLAIMS, (
        f"backend {backend!r} on {device} declares a profile its arithmetic does not have: "
        f"{check['problems']}\n  fingerprint: {json.dumps(fp)}\n  fix the profile in the "
        f"backend's Capability (kernel/), or the kernel; rerun: python -m conformance.probe "
        f"--backend={backend} --device={device}{emu}")
