"""The judge (``conformance.checks``) and the bounds it applies (``golden.bounds``), on real
``build()`` data: what passes, what fails, and what a failure message tells the reader."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import replace

import numpy as np
import pytest

from conformance.checks import judge, rerun_command
from conformance.matrix import grid
from golden.bounds import PROFILES, element_bound, statistics, tosa_fp8_bound, ulp
from golden.cases import Case, build
from golden.codecs import decode, encode, round_to_format
from golden.matmul import abs_dot, scaled_mm_exact

EXACT, FP32 = PROFILES["exact"], PROFILES["fp32"]
# the blocked profile (reduced-precision accumulation in blocks, fp32 across blocks)
BLK = next(p for p in PROFILES.values() if p.block is not None)

CASES = [
    Case(M=17, N=64, K=128, w="channel", a="token", sa="[M,1]", sb="[1,N]", bias="bf16",
         dataset="outlier"),
    Case(M=7, N=24, K=24, fmt_a="e5m2", fmt_b="e5m2", out="fp16", layout="kn"),
    Case(M=9, N=32, K=48, fmt_a="e5m2", fmt_b="e4m3fn", out="fp32", bias="fp32", dataset="range"),
    Case(M=17, N=64, K=128, level="layer", w="channel", a="dyn-token", sa="[M,1]", sb="[1,N]",
         x="fp16", dataset="rowscale"),
]


@pytest.fixture(scope="module")
def datas():
    return {c.id: build(c, 0) for c in CASES}


_OUT = {"bf16": (7, -126), "fp16": (10, -14), "fp32": (23, -126)}  # mantissa bits, emin


def spacing(x, out: str) -> np.ndarray:
    """Spacing of ``out`` values just above ``|x|`` (the smallest subnormal at 0); written out
    here so these tests do not lean on golden.bounds.ulp, which is under test."""
    man, emin = _OUT[out]
    ax = np.abs(np.asarray(x, np.float64))
    e = np.where(ax == 0, emin, np.frexp(ax)[1] - 1)
    return np.ldexp(1.0, np.maximum(e, emin) - man)


def next_up(x: float, out: str) -> float:
    """The next value of ``out`` above ``x`` (finite x)."""
    x = float(x)
    step = float(spacing(x, out))
    if x < 0 and float(np.frexp(-x)[0]) == 0.5:
        step /= 2  # just below a power of two the spacing halves
    return float(round_to_format(x + step, out))


def rerun(case_id):
    return rerun_command(case_id, "torch", "cpu", 0)


def finite_index(data, pick=0):
    idx = np.argwhere(np.isfinite(data.expected) & (data.expected != 0))
    return tuple(int(i) for i in idx[pick * 7 % len(idx)])


# =============================================================================================
# the reference itself passes
# =============================================================================================


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_reference_output_passes_with_zero_error(datas, c, profile):
    d = datas[c.id]
    v = judge(d, d.expected.copy(), PROFILES[profile])
    assert v.passed, v.failures
    assert v.failures == []
    assert v.metrics["max_abs_err"] == 0 and v.metrics["max_ulps"] == 0
    assert v.metrics["frac_exact"] == 1.0 and v.metrics["bound_use"] == 0


def test_empty_output_passes():
    d = build(Case(M=0, N=32, K=64), 0)
    assert d.expected.shape == (0, 32)
    assert judge(d, np.zeros((0, 32)), FP32).passed
    assert not judge(d, np.zeros((1, 32)), FP32).passed


# =============================================================================================
# one ulp under the exact profile; the failure message
# =============================================================================================


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_one_ulp_fails_exact_and_message_says_everything(datas, c):
    d = datas[c.id]
    i, j = finite_index(d, 3)
    got = d.expected.copy()
    got[i, j] = next_up(got[i, j], c.out)
    assert got[i, j] != d.expected[i, j]
    v = judge(d, got, EXACT)
    assert not v.passed
    assert any("exceed the exact bound" in f for f in v.failures), v.failures
    assert (v.worst["m"], v.worst["n"]) == (i, j)
    assert v.worst["ulps"] == pytest.approx(1.0, rel=0.51)
    # ... while fp32 accepts one ulp
    assert judge(d, got, FP32).passed
    msg = v.message(c.id, rerun(c.id))
    assert c.id in msg
    assert f"[{i},{j}]" in msg
    assert f"got {float(got[i, j])!r}" in msg, msg
    assert f"expected {float(d.expected[i, j])!r}" in msg, msg
    assert re.search(r"bound 0\b", msg), msg
    assert re.search(r"= 1(\.0*)? output ulps|= 0\.5 output ulps", msg), msg
    line = [ln for ln in msg.splitlines() if "rerun:" in ln]
    assert len(line) == 1
    cmd = line[0].split("rerun:", 1)[1].strip()
    assert re.match(r"pytest conformance --backend=torch .*--case=", cmd), cmd
    assert shlex.split(cmd)[-1] == f"--case={c.id}"


# =============================================================================================
# fp32 profile failures
# =============================================================================================


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_two_ulps_beyond_the_bound_fails_fp32(datas, c):
    d = datas[c.id]
    i, j = finite_index(d, 5)
    bias = None if d.bias is None else d.bias.reshape(1, -1)
    bnd = element_bound(d.expected, d.absdot, d.mag(), bias, c.K, c.out, FP32)
    e = d.expected[i, j]
    got = d.expected.copy()
    got[i, j] = e + np.sign(e) * (bnd[i, j] + 2 * float(spacing(e, c.out)))
    v = judge(d, got, FP32)
    assert not v.passed
    assert any("exceed the fp32 bound" in f for f in v.failures), v.failures
    assert (v.worst["m"], v.worst["n"]) == (i, j)
    assert v.worst["bound"] == pytest.approx(bnd[i, j])
    # exactly at the bound still passes (the check is |err| <= bound)
    got[i, j] = e + bnd[i, j] * 0.999
    assert judge(d, got, FP32).passed


def test_nan_where_finite_expected_fails(datas):
    c = CASES[0]
    d = datas[c.id]
    got = d.expected.copy()
    got[3, 5] = np.nan
    v = judge(d, got, FP32)
    assert not v.passed
    assert any("NaN where Y* is finite" in f for f in v.failures), v.failures
    assert not judge(d, got, EXACT).passed


def test_nan_mismatch_is_the_reported_worst_element(datas):
    """The message's worst element must be the wrong one, not an arbitrary correct element."""
    c = CASES[0]
    d = datas[c.id]
    got = d.expected.copy()
    got[3, 5] = np.nan
    v = judge(d, got, FP32)
    assert (v.worst["m"], v.worst["n"]) == (3, 5), (
        f"worst element reported as [{v.worst['m']},{v.worst['n']}] (got {v.worst['got']!r}, "
        f"expected {v.worst['expected']!r}); the NaN is at [3,5]")


def test_finite_where_nan_expected_fails():
    c = Case(M=9, N=32, K=48, edge="nan-a")
    d = build(c, 0)
    nan_rows = np.isnan(d.expected).all(axis=1)
    assert nan_rows.sum() == 1 and np.isnan(d.expected).sum() == c.N
    assert judge(d, d.expected.copy(), FP32).passed
    got = np.where(np.isnan(d.expected), 0.0, d.expected)
    v = judge(d, got, FP32)
    assert not v.passed
    assert any(f"{c.N} elements should be NaN" in f for f in v.failures), v.failures
    got = d.expected.copy()
    got[nan_rows.argmax(), 4] = 1.0  # one element of the NaN row
    assert any("1 elements should be NaN" in f for f in judge(d, got, FP32).failures)


def test_wrong_shape_fails(datas):
    c = CASES[0]
    d = datas[c.id]
    for got in (d.expected.T.copy(), d.expected[:, :-1], d.expected.reshape(-1),
                d.expected[None]):
        v = judge(d, got, FP32)
        assert not v.passed and "output shape" in v.failures[0], v.failures
    sq = build(Case(M=24, N=24, K=24), 0)  # square: the transpose has the right shape
    v = judge(sq, sq.expected.T.copy(), FP32)
    assert not v.passed


def _with_inputs(data, a, b_kn, sa, sb):
    """``data`` with other FP8 codes / scale values; Y* and the bound inputs recomputed."""
    c = data.case
    exp = scaled_mm_exact(a, c.fmt_a, b_kn, c.fmt_b, sa, sb, data.bias, c.out)
    av, bv = decode(a, c.fmt_a), decode(b_kn, c.fmt_b)
    return replace(data, a=a, b_kn=b_kn, scale_a=sa.reshape(-1, 1), scale_b=sb.reshape(1, -1),
                   expected=exp, absdot=abs_dot(av, bv), scale_mag=None)


def test_inf_near_fp16_max():
    """+inf for Y* = 65504 (fp16 max) is within the bound (the overflow threshold 65520 is
    within an ulp); +inf for Y* = 1.0 is not."""
    c = Case(M=2, N=16, K=32, w="channel", a="token", sa="[M,1]", sb="[1,N]", out="fp16")
    d = build(c, 0)
    one = int(encode(1.0, "e4m3fn"))
    a = np.zeros((2, 32), np.uint8)
    a[:, 0] = one
    b = np.zeros((32, 16), np.uint8)
    b[0] = one
    d = _with_inputs(d, a, b, np.array([65504.0, 1.0], np.float32), np.ones(16, np.float32))
    assert (d.expected[0] == 65504.0).all() and (d.expected[1] == 1.0).all()
    assert judge(d, d.expected.copy(), FP32).passed
    got = d.expected.copy()
    got[0, 3] = np.inf
    assert judge(d, got, FP32).passed, judge(d, got, FP32).failures
    got = d.expected.copy()
    got[0, 3] = -np.inf
    assert not judge(d, got, FP32).passed
    got = d.expected.copy()
    got[1, 3] = np.inf
    v = judge(d, got, FP32)
    assert not v.passed and (v.worst["m"], v.worst["n"]) == (1, 3)
    assert v.worst["got"] == math.inf


def test_real_overflow_case_accepts_its_infinities():
    c = Case(M=9, N=32, K=48, out="fp16", dataset="maxexp", edge="overflow")
    d = build(c, 0)
    assert np.isinf(d.expected).any()
    assert judge(d, d.expected.copy(), FP32).passed
    got = np.where(np.isinf(d.expected), np.copysign(65504.0, d.expected), d.expected)
    # The exact values are 1e7 .. 1e10: an fp16 output that saturates to max instead of
    # overflowing to inf (IEEE, and what the H100 does, DESIGN §10) is far outside the bound.
    assert not judge(d, got, FP32).passed


def test_zero_where_the_output_overflowed_fails():
    """Every Y* of this case is +-inf; the exact values are 1e7 .. 1e10, far past fp16's max.
    A kernel within the fp32 profile's accumulation error of them must give +-inf (or +-max);
    an all-zero output is wrong by 10 orders of magnitude and must fail."""
    c = Case(M=9, N=32, K=48, out="fp16", dataset="maxexp", edge="overflow")
    d = build(c, 0)
    assert np.isinf(d.expected).all()
    exact = (decode(d.a, c.fmt_a) @ decode(d.b_kn, c.fmt_b)) * d.mag()
    assert np.abs(exact).min() > 100 * 65520
    # even the accumulation allowance is far smaller than the distance to the threshold
    bnd = element_bound(d.expected, d.absdot, d.mag(), None, c.K, c.out, FP32)
    assert (np.abs(exact) - bnd > 65520).all()
    got = np.zeros_like(d.expected)
    v = judge(d, got, FP32)
    assert not v.passed, (f"all-zero output accepted for an overflowed case; worst element "
                          f"{v.worst}")


def test_exact_zero_output_allows_only_a_subnormal_sized_error():
    """All-zero A, no bias: Y* = 0 and sum|A||B| = 0, so the only allowance is the output
    rounding around 0 (half the smallest bf16 subnormal 2**-133, plus the kernel's own half
    ulp). 0.001 is about 2**123 smallest subnormals away."""
    c = Case(M=4, N=32, K=48, edge="zeros")
    d = build(c, 0)
    assert (d.expected == 0).all() and (d.absdot == 0).all()
    got = d.expected.copy()
    got[1, 2] = 1e-3
    v = judge(d, got, FP32)
    assert not v.passed, f"1e-3 accepted where Y* = 0 exactly; bound {v.worst['bound']!r}"


def test_ulp_of_zero_is_the_smallest_subnormal():
    for out, want in (("bf16", 2.0**-133), ("fp16", 2.0**-24), ("fp32", 2.0**-149)):
        assert float(ulp(0.0, out)) == want, (out, float(ulp(0.0, out)))
        assert float(ulp(want, out)) == want and float(ulp(1.0, out)) > want


# =============================================================================================
# statistics: bias and variance
# =============================================================================================


@pytest.fixture(scope="module")
def big():
    c = Case(M=64, N=256, K=512, out="bf16", dataset="gauss")
    return build(c, 0)


def test_one_ulp_systematic_bias_fails_the_signed_bias_check(big):
    d = big
    e = d.expected
    assert np.isfinite(e).all()
    got = np.array([next_up(x, "bf16") for x in e.ravel()]).reshape(e.shape)
    assert (got > e).all()
    v = judge(d, got, FP32)
    assert not v.passed
    assert any(f.startswith("signed-bias check") for f in v.failures), v.failures
    # no element is out of its bound: only the statistics see it
    assert not any("exceed" in f for f in v.failures), v.failures
    # the same error with random signs is no bias (it is still too much variance)
    rng = np.random.default_rng(0)
    flip = rng.random(e.shape) < 0.5
    got2 = np.where(flip, got, -np.array([next_up(-x, "bf16") for x in e.ravel()]).reshape(e.shape))
    v2 = judge(d, got2, FP32)
    assert not any(f.startswith("signed-bias check") for f in v2.failures), v2.failures


def test_a_bias_below_the_variance_limit_is_caught_by_the_signed_bias_check_alone(big):
    d = big
    e = d.expected
    got = e + 0.55 * spacing(e, "bf16")  # z ~ 0.55: sum z^2 ~ 0.3 T passes, sum z ~ 0.55 T fails
    v = judge(d, got, FP32)
    assert "signed-bias" in v.checks and "variance" not in v.checks, v.failures


def test_unbiased_half_ulp_noise_passes(big):
    d = big
    e = d.expected
    rng = np.random.default_rng(1)
    got = e + rng.uniform(-0.5, 0.5, e.shape) * spacing(e, "bf16")
    v = judge(d, got, FP32)
    # TOSA's statistics take it; the values are off the bf16 grid, so none equals Y*
    assert v.checks == ["mismatch-rate"], v.failures
    # and a realistic kernel: a quarter of the elements off by one ulp, either way
    off = rng.random(e.shape) < 0.25
    up = np.array([next_up(x, "bf16") for x in e.ravel()]).reshape(e.shape)
    down = -np.array([next_up(-x, "bf16") for x in e.ravel()]).reshape(e.shape)
    got = np.where(off, np.where(rng.random(e.shape) < 0.5, up, down), e)
    v = judge(d, got, FP32)
    assert v.passed, v.failures
    assert 0.7 < v.metrics["frac_exact"] < 0.8


def test_statistics_directly():
    bound = np.ones(100)
    s = statistics(np.full(100, 0.3), bound)
    assert s["count"] == 100 and s["variance_ok"] and not s["bias_ok"]
    s = statistics(np.where(np.arange(100) % 2 == 0, 0.9, -0.9), bound)
    assert s["bias_ok"] and not s["variance_ok"]
    s = statistics(np.array([np.nan, 1.0, 5.0]), np.array([1.0, 0.0, 10.0]))
    assert s["count"] == 1 and s["sum_z"] == 0.5


# =============================================================================================
# bounds and profiles
# =============================================================================================


def test_element_bound_grows_with_k_and_is_zero_for_exact():
    e = np.array([[1.0, -3.5, 100.0, 0.0]])
    absdot = np.array([[8.0, 8.0, 300.0, 2.0]])
    scale = np.array([[1.0, 0.5, 2.0, 1.0]])
    prev = None
    for k in (1, 16, 256, 4096, 65536):
        b = element_bound(e, absdot, scale, None, k, "fp32", FP32)
        assert (element_bound(e, absdot, scale, None, k, "fp32", EXACT) == 0).all()
        assert (b > 0).all()
        if prev is not None:
            assert (b > prev).all(), (k, b, prev)
        prev = b
    # and with the bias term
    bias = np.array([[1e3, 0, 0, 0]])
    assert (element_bound(e, absdot, scale, bias, 16, "fp32", FP32)[0, 0]
            > element_bound(e, absdot, scale, None, 16, "fp32", FP32)[0, 0])


def test_blocked_profile_is_looser_than_fp32():
    for k in (2, 16, 128, 129, 4096, 65536):
        assert BLK.eps_acc(k) > FP32.eps_acc(k) > 0, k
    assert EXACT.eps_acc(4096) == 0
    assert FP32.eps_acc(4096) == pytest.approx(4095 * 2.0**-24 + 3 * 2.0**-24)
    assert PROFILES["fp16"].eps_acc(100) > FP32.eps_acc(100)


def test_profiles_describe_themselves():
    assert "exact" in EXACT.describe()
    assert f"blocks of {BLK.block}" in BLK.describe()
    assert ("truncating" in BLK.describe()) == BLK.truncates


# =============================================================================================
# rerun command
# =============================================================================================


def test_rerun_command_parses_back_to_the_same_id():
    ids = [c.id for c in grid("smoke")] + [c.id for c in CASES] + [
        c.id for c in grid("default") if c.level == "layer"][:5]
    for cid in ids:
        cmd = rerun_command(cid, "torch-fast", "cuda", 7)
        argv = shlex.split(cmd)
        assert argv[:2] == ["pytest", "conformance"]
        opts = dict(a.split("=", 1) for a in argv[2:])
        assert opts == {"--backend": "torch-fast", "--device": "cuda", "--seed": "7",
                        "--case": cid}
        assert Case.from_id(opts["--case"]).id == cid


@pytest.mark.parametrize("size, k, has_bias, out, want", [
    # ksb = 256 relaxed to min(256, 64) 2**10 = 65536; 2 ksb units of size 2**-8 (bf16)
    (1.0, 256, False, "bf16", 2 * 65536 * 2.0**-8),
    # ksb = 33 with the bias; 33 * 1024 = 33792 units of size 2**-24 (fp32)
    (3.0, 32, True, "fp32", 2 * 33792 * 3.0 * 2.0**-24),
    # K beyond 2**16: ksb itself is larger than the relaxation
    (1.0, 2**17, False, "fp16", 2 * 2**17 * 2.0**-11),
    (0.0, 64, False, "bf16", 0.0),  # TOSA requires an exact zero
    (1e-300, 64, False, "fp16", 2 * 65536 * 2.0**-14),  # floored at fp16's normal minimum
    (math.inf, 64, False, "bf16", math.inf),
])
def test_tosa_fp8_bound(size, k, has_bias, out, want):
    assert float(tosa_fp8_bound(size, k, has_bias, out)) == want


def test_tosa_ratio_metric_compares_bounds_on_the_case(datas):
    """The judge reports the largest ratio of our bound to TOSA's over the case."""
    data = next(d for d in datas.values() if d.case.out == "bf16" and d.bias is None)
    v = judge(data, data.expected, PROFILES["fp32"])
    c = data.case
    ours = element_bound(data.expected, data.absdot, data.mag(), None, c.K, c.out,
                         PROFILES["fp32"])
    tosa = tosa_fp8_bound(data.mag() * data.absdot, c.K, False, c.out)
    ok = np.isfinite(ours) & (tosa > 0) & np.isfinite(tosa) & np.isfinite(data.expected)
    assert v.metrics["tosa_ratio"] == pytest.approx(float((ours[ok] / tosa[ok]).max()))
    assert 0 < v.metrics["tosa_ratio"] < 1
    assert judge(data, data.expected, PROFILES["exact"]).metrics["tosa_ratio"] == 0.0


def _outputs(d) -> dict:
    """Kernel outputs that reach every branch of the judge: Y* itself, a small relative
    error everywhere, one large error in the last row, a NaN and an infinity."""
    exp = d.expected.astype(np.float64)
    late = exp.copy()
    late[-1, -1] = late[-1, -1] * 1.5 + 1.0
    nan_inf = exp * (1 + 2.0**-12)
    nan_inf[1, 2], nan_inf[-2, 0] = np.nan, np.inf
    return {"exact": exp, "scaled": exp * (1 + 2.0**-9), "late": late, "nan-inf": nan_inf}


@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("profile", ["fp32", "acc13-trunc-blk128", "exact"])
def test_row_blocks_give_the_one_block_verdict(datas, monkeypatch, threads, profile):
    """Large cases are judged in row blocks, on threads; the verdict is the one-block one:
    the same failures, counts, maxima and worst element (row counted from the top), the
    sums equal up to the order of their additions. Here blocks of one row force it (a Y*
    with infinities stays one block)."""
    from conformance import checks

    prof = PROFILES[profile]
    for d in datas.values():
        for name, got in _outputs(d).items():
            whole = judge(d, got, prof)
            monkeypatch.setenv("OMP_NUM_THREADS", threads)
            monkeypatch.setattr(checks, "BLOCK_ELEMENTS", d.case.N)
            finite = bool(np.isfinite(d.expected).all())  # else one block: the whole array
            assert len(checks._row_blocks(d.expected)) == (d.case.M if finite else 1)
            rows = judge(d, got, prof)
            monkeypatch.undo()
            where = f"{d.case.id} {name}"
            assert (rows.passed, rows.failures, rows.checks, repr(rows.worst)) == (
                whole.passed, whole.failures, whole.checks, repr(whole.worst)), where
            for k, v in whole.metrics.items():
                want = v if v is None else pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True)
                assert rows.metrics[k] == want, (where, k)


def test_sqnr_of_an_output_whose_error_squared_overflows_is_minus_inf():
    """An output past float64's square root (a float64 adapter gone wrong) gives a verdict:
    the noise sum overflows to inf and the SQNR is -inf dB, not a math domain error."""
    d = build(Case(M=4, N=16, K=32, level="layer", w="tensor", a="dyn-token", sa="[M,1]",
                   sb="[]", out="bf16", x="bf16"), 0)
    got = d.expected.copy()
    got[0, 0] = -1e200
    v = judge(d, got, FP32)
    assert not v.passed and "bound" in v.checks
    assert v.metrics["sqnr_db"] == -math.inf
