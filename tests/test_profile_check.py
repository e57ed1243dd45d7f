"""Declared accumulation profiles against measured fingerprints (issue 6 item 3): the rules
of ``conformance.profile_check``, every committed baseline, the live CPU backends, and the
conformance test that applies the check in each run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_options import run_pytest, summary  # tests/ is on sys.path (no __init__.py)

from conformance import probe
from conformance.profile_check import CONSISTENT, OVERCLAIMS, UNMEASURED, check_profile, fingerprint_tables
from golden.bounds import PROFILES, AccumProfile, get_profile
from kernel.registry import get_backend

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "baselines").glob("*/*/fingerprint.json"))


def fp(bits, block=None, truncates=None, rounding="nearest-even", exact=False) -> dict:
    """A fingerprint with the fields the check reads."""
    return {"acc_bits": bits, "block": block, "truncates": truncates,
            "output_rounding": rounding, "exact": exact}


H100 = fp(13, block=128, truncates=True)
H100_FAST = fp(13, truncates=True)


@pytest.mark.parametrize("profile, measured, status", [
    # the old cuda profiles claimed 15 bits where the probe measures 13
    (AccumProfile("acc15-trunc-blk128", frac_bits=15, block=128, truncates=True), H100, OVERCLAIMS),
    (AccumProfile("acc15-trunc", frac_bits=15, truncates=True), H100_FAST, OVERCLAIMS),
    (get_profile("acc13-trunc-blk128"), H100, CONSISTENT),
    (get_profile("acc13-trunc"), H100_FAST, CONSISTENT),
    (get_profile("acc13-trunc"), H100, CONSISTENT),  # no block claimed: looser, allowed
    (get_profile("acc13-trunc-blk128"), H100_FAST, OVERCLAIMS),  # claims a block it lacks
    # a shorter block than measured promises less error growth: an overclaim
    (AccumProfile("b", frac_bits=13, block=64, truncates=True), H100, OVERCLAIMS),
    (AccumProfile("b", frac_bits=13, block=256, truncates=True), H100, CONSISTENT),
    (AccumProfile("b", frac_bits=13, block=128, truncates=True), fp(13, 256, True), OVERCLAIMS),
    # same bits, but nearest claimed where the accumulator truncates: half the unit
    (AccumProfile("n13", frac_bits=13, block=128), H100, OVERCLAIMS),
    (AccumProfile("t14", frac_bits=14, truncates=True), fp(13), CONSISTENT),  # 2**-14 both
    (get_profile("fp32"), fp(23), CONSISTENT),
    (get_profile("fp32"), fp("exact"), CONSISTENT),
    (get_profile("fp16"), fp(10), CONSISTENT),
    (get_profile("fp32"), fp(10), OVERCLAIMS),
    (get_profile("fp32"), fp("exact", rounding="toward-zero"), OVERCLAIMS),
    (get_profile("fp32"), fp(23, rounding="nearest-away"), CONSISTENT),
    (get_profile("exact"), fp("exact", exact=True), CONSISTENT),
    (get_profile("exact"), fp(23), OVERCLAIMS),
    (get_profile("exact"), fp("exact", exact=False), OVERCLAIMS),
    (get_profile("fp32"), fp("unsupported: level 'op' not in []"), UNMEASURED),
])
def test_check_rules(profile, measured, status):
    got, problems = check_profile(profile, measured)
    assert got == status, problems
    assert bool(problems) == (status != CONSISTENT)
    if status == OVERCLAIMS:
        assert all(profile.name in p for p in problems)


def test_problem_names_claim_and_measurement():
    _, problems = check_profile(AccumProfile("acc15-trunc", frac_bits=15, truncates=True),
                                H100_FAST)
    assert "15 fraction bits" in problems[0] and "13 fraction bits" in problems[0]


def test_baselines_exist():
    machines = {p.parent.parent.name + "/" + p.parent.name for p in BASELINES}
    assert {"cpu/torch", "h100/torch", "h100/torch-fast"} <= machines


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_declared_profile_within_committed_fingerprint(path):
    """The profile each backend declares today for the baseline's device must not claim more
    than the committed measurement (a CPU-only CI run guards the H100 profiles)."""
    measured = json.loads(path.read_text())
    adapter = get_backend(measured["backend"])
    profile = adapter.profile(measured["device"])
    status, problems = check_profile(profile, measured)
    assert status == CONSISTENT, problems


@pytest.mark.parametrize("backend, status", [
    ("reference", CONSISTENT), ("torch", CONSISTENT), ("synthetic-fp16acc", CONSISTENT),
    ("broken-degraded", CONSISTENT),
    # known arithmetic that the declared fp32 profile does not have
    ("synthetic-blk32-13", OVERCLAIMS), ("synthetic-trunc", OVERCLAIMS),
    ("torch-fast", UNMEASURED),  # use_fast_accum does not exist on cpu
])
def test_live_cpu_backends(backend, status):
    tables = fingerprint_tables(get_backend(backend), backend, "cpu")
    row = tables["profile_check"][0]
    assert row["status"] == status, row
    assert {r["probe"] for r in tables["fingerprint"]} >= set(probe.EXACT)


def test_every_profile_is_checked_somewhere():
    """Each named profile is declared by some backend, or is a building block of the synthetic
    and broken kernels; a profile nobody declares is dead weight."""
    declared = {get_backend(b).profile(d).name
                for b in ("reference", "torch", "torch-fast", "broken-degraded")
                for d in ("cpu", "cuda", "xpu")}
    assert set(PROFILES) <= declared | {"fp16"}


def test_conformance_run_fails_an_overclaiming_profile(tmp_path):
    """The per-run test fails for a kernel whose declared profile claims more than it has,
    and passes for the reference; either way the report carries the fingerprint."""
    bad = run_pytest("conformance", "--backend=synthetic-blk32-13", "--grid=vllm-block",
                     "-k", "test_profile_within_fingerprint", f"--report-dir={tmp_path / 'bad'}")
    assert bad.returncode == 1, bad.stdout[-2000:]
    assert "claims unit roundoff" in bad.stdout and "13 fraction bits" in bad.stdout
    report = json.loads((tmp_path / "bad" / "tolerance.json").read_text())
    (check,) = report["tables"]["profile_check"]
    assert check["status"] == OVERCLAIMS and "blocks of 32" in check["measured"], check
    assert "overclaims" in (tmp_path / "bad" / "tolerance.md").read_text()
    good = run_pytest("conformance", "--backend=reference", "--grid=vllm-block",
                      "-k", "test_profile_within_fingerprint", f"--report-dir={tmp_path / 'ok'}")
    assert good.returncode == 0, good.stdout[-2000:]
    assert "1 passed" in summary(good.stdout)
    report = json.loads((tmp_path / "ok" / "tolerance.json").read_text())
    rows = {r["probe"]: r["measured"] for r in report["tables"]["fingerprint"]}
    assert rows["acc_bits"] == "exact" and rows["exact"] is True, rows
    assert all("tables" not in r for r in report["records"])
