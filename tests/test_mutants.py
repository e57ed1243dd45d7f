"""The mutant catalogue (kernel/mutants), the anchors' rules (conformance/anchors.py) and the
power measurement (``python -m conformance.mutants``).

Each mutant must be live (its output differs from its parent's on a default-grid case, so it
is no dead code) and be failed by the suite's judge there; the correct kernels must never be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.anchors import ANCHOR_RULES, anchor_failures
from conformance.checks import judge
from conformance.matrix import grid
from conformance.mutants import RULES, SUITE, main, run_mutants
from conformance.plugin import case_data
from golden.bounds import get_profile, tosa_fp8_bound
from golden.cases import Case, build
from golden.codecs import spacing
from golden.store import Store
from kernel.mutants import MUTANTS, get_mutant
from kernel.reference import ReferenceAdapter
from kernel.registry import backend_names, get_backend

ROOT = Path(__file__).resolve().parents[1]
FP32 = get_profile("fp32")
# The bugs issue 7 names, by the mutant that carries each.
NAMED_BUGS = ("n1-scale-as-block", "w8a8-as-weight-only", "stale-granularity-cache",
              "double-transpose", "bias-dropped", "bias-twice", "padded-rows-leak",
              "token-scale-along-n", "reciprocal-weight-scale", "fp16-accumulation",
              "truncating-output", "k-tail-dropped", "one-ulp-bias", "unsaturated-quant-cast",
              "formats-swapped", "first-channel-scale")


@pytest.fixture(scope="module")
def store():
    return Store()


@pytest.fixture(scope="module")
def default_ids():
    return {c.id for c in grid("default")}


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))


def test_catalogue_holds_the_named_bugs_and_at_least_15():
    assert len(MUTANTS) >= 15
    assert set(NAMED_BUGS) <= set(MUTANTS), set(NAMED_BUGS) - set(MUTANTS)
    for name, cls in MUTANTS.items():
        assert cls.bug and cls.history and cls.witness, name
        assert cls.name == f"mutant:{name}"


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_differs_from_its_parent_and_the_suite_fails_it(name, store, default_ids):
    """On its witness (default-grid cases, run in order on one instance) the mutant's last
    output differs from the reference's, and the judge fails it under the fp32 claim."""
    mutant = get_mutant(name)
    assert set(mutant.witness) <= default_ids, "witness cases must be default-grid cases"
    datas = [case_data(Case.from_id(w), 0, store) for w in mutant.witness]
    for d in datas[:-1]:
        mutant.run(d, "cpu")
    data = datas[-1]
    assert mutant.why_not(data.case, "cpu") is None
    parent = ReferenceAdapter().run(data, "cpu").values
    try:
        got = mutant.run(data, "cpu").values
    except RuntimeError:  # a mutant may raise where its real op would (n1-scale-as-block)
        return
    assert not _same(got, parent), f"{name} is dead code on {data.case.id}"
    verdict = judge(data, got, mutant.profile("cpu"))
    assert not verdict.passed


def test_stateful_mutant_alone_equals_its_parent(store):
    """The stale cache needs a previous call at the same shape: alone, the case passes."""
    mutant = get_mutant("stale-granularity-cache")
    data = case_data(Case.from_id(mutant.witness[-1]), 0, store)
    assert _same(mutant.run(data, "cpu").values, data.expected)


def test_mutants_are_backends_with_clear_errors():
    assert "mutant:<name>" in backend_names()
    assert get_backend("mutant:one-ulp-bias").name == "mutant:one-ulp-bias"
    with pytest.raises(ValueError, match="unknown mutant 'nope'; mutants: .*one-ulp-bias"):
        get_backend("mutant:nope")


def test_mutant_claims_fp32_and_takes_w8a8_only():
    m = get_mutant("bias-dropped")
    assert m.profile("cpu").name == "fp32"
    block = Case(M=5, N=256, K=256, level="layer", w="block", a="group", sa="[M,G]",
                 sb="[Nb,Kb]")
    assert "not supported" in m.why_not(block, "cpu")


# --- anchors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_case():
    return build(Case(M=16, N=32, K=64, out="bf16", dataset="gauss"), 0)


def _rule(name):
    return next(r for r in ANCHOR_RULES if r.name == name)


def test_anchor_rules_pass_the_reference_and_see_their_own_tolerance(bf16_case):
    d = bf16_case
    e = d.expected
    assert not any(anchor_failures(d, e).values())
    # 1% relative: inside assert_close's bf16 rtol 1.6e-2 and every looser rule
    assert not any(anchor_failures(d, e * 1.01).values())
    fails = anchor_failures(d, e * 1.02)  # 2%: only assert_close's 1.6e-2 sees it
    assert fails["assert_close"] and not fails["vllm-xpu-kernels"]
    fails = anchor_failures(d, e * 1.09)  # 9%: past 6e-2 and 7e-2, inside 0.125 and 0.5
    assert fails["vllm-xpu-kernels"] and fails["pytorch-scaled-mm"]
    assert not fails["transformer-engine"] and not fails["vllm-cutlass"]


def test_anchor_rules_fail_shape_and_nan_mismatches(bf16_case):
    d = bf16_case
    assert all(anchor_failures(d, d.expected[:-1]).values())
    got = d.expected.copy()
    got[3, 4] = np.nan
    assert all(anchor_failures(d, got).values())


def test_tosa_rule_is_the_bound_of_golden_bounds(bf16_case):
    d = bf16_case
    size = d.mag() * d.absdot
    allowed = _rule("tosa-fp8").allowed(d, d.expected)
    assert np.array_equal(allowed, tosa_fp8_bound(size, d.case.K, False, "bf16"))


def test_one_ulp_below_every_anchor_rule_is_failed_by_the_suite(bf16_case):
    """DESIGN §4: a one-ulp magnitude bias passes every anchor rule (no overflow here) and the
    suite's distribution checks fail it."""
    d = bf16_case
    e = d.expected
    got = np.where(e == 0, e, e + np.copysign(spacing(e, "bf16"), e))
    assert not any(anchor_failures(d, got).values())
    verdict = judge(d, got, FP32)
    assert not verdict.passed and "bound" not in verdict.checks
    assert "mismatch-rate" in verdict.checks


# --- the measurement ---------------------------------------------------------------------------


def test_run_mutants_on_smoke_kills_and_spares_the_controls():
    res = run_mutants("smoke", workers=1, mutants=["truncating-output", "bias-dropped",
                                                   "unsaturated-quant-cast"],
                      controls=["reference"])
    r = res["results"]
    assert set(r["truncating-output"]["first"]) == {SUITE}  # no anchor rule sees it
    assert r["truncating-output"]["first"][SUITE]["where"] == "grid"
    assert set(r["bias-dropped"]["first"]) == set(RULES) - {"tosa-fp8"}  # TOSA: too loose
    assert r["unsaturated-quant-cast"]["first"] == {}  # smoke has no overflowing static scale
    assert r["reference"]["failed"] == dict.fromkeys(RULES, 0)
    assert r["reference"]["run"] == len(grid("smoke"))


def test_cli_prints_the_table_and_ends_with_the_kill_rate(capsys):
    rc = main(["--grid", "smoke", "--workers", "1", "--mutant", "one-ulp-bias",
               "--mutant", "bias-twice"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[-1] == "kill rate: 2/2 (100%)"
    assert any(line.startswith("wall time: ") for line in out)
    assert any(line.startswith("one-ulp-bias") and " yes " in line for line in out)
    assert any("--backend=mutant:bias-twice" in line for line in out)


def test_cli_exits_1_below_the_required_rate(capsys):
    rc = main(["--grid", "smoke", "--workers", "1", "--mutant", "unsaturated-quant-cast"])
    assert rc == 1
    assert capsys.readouterr().out.splitlines()[-1] == "kill rate: 0/1 (0%)"


@pytest.mark.parametrize("args, message", [
    (["--grid", "nope"], "--grid='nope' is unknown; valid grids: smoke"),
    (["--mutant", "nope"], "--mutant nope: unknown; mutants: "),
    (["--workers", "0"], "--workers=0: must be at least 1"),
])
def test_cli_usage_errors_name_the_option(args, message):
    r = subprocess.run([sys.executable, "-m", "conformance.mutants", *args], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert message in r.stderr


def test_a_kill_reruns_through_pytest(tmp_path):
    """The rerun line of a kill fails the case under pytest, naming the mutant's bug."""
    case = get_mutant("truncating-output").witness[-1]
    r = subprocess.run([sys.executable, "-m", "pytest", "conformance", "-q", "-p", "no:cacheprovider",
                        "--backend=mutant:truncating-output", f"--case={case}",
                        f"--report-dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "mismatch rate" in r.stdout and "kernel note: mutant mutant:truncating-output" in r.stdout
