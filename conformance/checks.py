"""The judge: compare a kernel's output with the reference and the declared profile's bound.

A case passes when (1) the output has shape [M, N], (2) NaN appears exactly where Y* is NaN,
(3) every element is within its bound (``golden.bounds.element_bound``; zero for an exact
profile) with infinities compared as the overflow threshold, (4) TOSA's variance and
signed-bias statistics hold over all outputs, and (5) no more elements differ from Y* than the
profile's accumulation error can explain (the mismatch-rate check,
``golden.bounds.mismatch_limit``). Errors below one output ulp that every element shares (a
truncating output rounding, a one-ulp bias) pass (3); (4) sees them where the bound is about
one ulp, (5) also where it is wider.

How: each row block of the output (the whole output unless it is large) is tallied (counts,
sums, extremes, candidate worst elements), and the verdict is read off the joined tallies.
A block whose output and Y* are finite takes a path with no masks, bit for bit the general
one's results.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field

import numpy as np

from golden.bounds import (
    AccumProfile,
    accumulation_allowance,
    allowance_bound,
    extended,
    finite_bound_parts,
    finite_mismatch_sum,
    mismatch_limit,
    statistics,
    statistics_from_sums,
    tosa_fp8_bound,
    tosa_ratio_max,
    ulp,
)
from golden.cases import CaseData
from golden.codecs import decode, where_or_zero
from golden.formats import get_format
from golden.parallel import map_ordered

__all__ = ["Verdict", "judge", "rerun_command", "unrounded"]


@dataclass
class Verdict:
    """Outcome of one case: pass/fail, the failed checks, metrics, and the worst element."""

    passed: bool
    failures: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    worst: dict | None = None
    checks: list[str] = field(default_factory=list)  # short names of the failed checks

    def message(self, case_id: str, rerun: str) -> str:
        lines = [f"case {case_id} FAILED: " + "; ".join(self.failures)]
        if self.worst:
            w = self.worst
            lines.append(
                f"  worst element [{w['m']},{w['n']}]: got {w['got']!r}, expected {w['expected']!r}, "
                f"bound {w['bound']:.6g}, |error| {w['error']:.6g} = {w['ulps']:.4g} output ulps"
            )
        m = self.metrics
        lines.append(
            "  metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in m.items() if v is not None)
        )
        lines.append(f"  rerun: {rerun}")
        return "\n".join(lines)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def rerun_command(case_id: str, backend: str, device: str, seed: int,
                  emulated: bool = False) -> str:
    """One shell line that reruns just this case."""
    return (f"pytest conformance --backend={backend} --device={device} --seed={seed} "
            + ("--emulate-xpu " if emulated else "") + f"--case={shlex.quote(case_id)}")


# Outputs per row block of a large case whose Y* is all finite: each block's temporaries
# (2 MB each) stay in cache, and blocks run on golden.parallel's threads. A case of at most
# this many outputs, or with a non-finite Y*, is one block: the whole array. The judge of an
# 8192 x 6144 output on the H100's 16-core host: 0.79-0.93 s in blocks of 2**16 on 4 threads,
# 0.54-0.61 s in blocks of 2**18 on 8 (fewer GIL handoffs); on the 2-core CPU a 1023 x 6144
# output takes 0.11-0.13 s either way. No default-grid case has more than 2**16 outputs.
BLOCK_ELEMENTS = 1 << 18


def judge(data: CaseData, got: np.ndarray, profile: AccumProfile) -> Verdict:
    """Compare ``got`` (float64 values) with ``data.expected`` under ``profile``."""
    exp = data.expected
    got = np.asarray(got, np.float64)
    if got.shape != exp.shape:
        return Verdict(False, [f"output shape {got.shape} != expected {exp.shape} (M, N)"],
                       checks=["shape"])
    if exp.size == 0:
        return Verdict(True, metrics={"elements": 0})
    tallies = map_ordered(lambda rows: _tally(data, got, profile, rows), _row_blocks(exp))
    return _verdict(profile, _combine(tallies))


def _row_blocks(exp: np.ndarray) -> list[slice]:
    """Row slices of about BLOCK_ELEMENTS outputs each; one slice unless Y* is large and all
    finite (the overflow handling reads Y* as a whole)."""
    m, n = exp.shape
    if exp.size <= BLOCK_ELEMENTS or not np.isfinite(exp).all():
        return [slice(0, m)]
    step = max(1, BLOCK_ELEMENTS // max(n, 1))
    return [slice(r, min(m, r + step)) for r in range(0, m, step)]


@dataclass
class _Tally:
    """One row block's counts, sums and extremes (:func:`_combine` joins blocks in order)."""

    size: int
    nan_missing: int  # NaN in Y*, not in the output
    nan_extra: int  # NaN in the output, not in Y*
    over: int  # elements beyond the bound
    stats: tuple  # (count, sum z**2, sum z) of the variance and signed-bias checks
    equal: int  # elements equal to Y* (NaN matching NaN)
    mismatch: tuple | None  # (finite elements, those differing from Y*, sum of probabilities)
    maxima: dict  # max_abs_err, max_ulps, rel_err, bound_use, tosa_ratio
    sqnr: tuple | None  # (any finite pair, noise, signal) for layer cases
    worst_use: dict | None  # the element of largest bound use (first on ties, NaN first)
    worst_err: dict | None  # the element of largest error, for when no bound is used
    use_seen: bool  # some element uses its bound (or exceeds it)
    worst_nan: dict | None  # the first element where exactly one of output and Y* is NaN


def _tally(data: CaseData, got_all: np.ndarray, profile: AccumProfile, rows: slice) -> _Tally:
    """The judge's quantities over output rows ``rows``."""
    exp, got = data.expected[rows], got_all[rows]
    if not profile.exact and np.isfinite(exp).all() and np.isfinite(got).all():
        t = _tally_finite(data, exp, got, profile, rows)
        if t is not None:
            return t
    return _tally_general(data, exp, got, profile, rows)


def _tally_finite(data, exp, got, profile, rows) -> _Tally | None:
    """:func:`_tally_general`'s quantities, bit for bit, where Y* and the output are finite
    and the profile not exact: no masks, each quantity once. None where the bound is not
    finite (the general path then judges the block)."""
    c = data.case
    bias = None if data.bias is None else data.bias.reshape(1, -1)
    absdot, mag = data.absdot[rows], data.mag(rows)
    acc = accumulation_allowance(absdot, mag, bias, c.K, profile, _operand_eps(c))
    ye = np.abs(exp)
    u0, bound = finite_bound_parts(ye, acc, c.out)
    if not math.isfinite(float(bound.sum())):
        return None
    diff = got - exp
    err = np.abs(diff)
    use = err / bound  # |z|; 0 where the output equals Y* (bound > 0)
    over = int(np.count_nonzero(err > bound))
    z = diff / bound
    equal = int(np.count_nonzero(got == exp))
    mu = finite_mismatch_sum(ye, acc, c.out)
    ulps = err / u0
    scale_sum = mag * absdot if bias is None else mag * absdot + np.abs(bias)
    if scale_sum.min() > 0:
        rel = err / scale_sum
    else:
        rel = np.divide(err, scale_sum, out=np.zeros_like(err), where=scale_sum > 0)
    ratio = tosa_ratio_max(bound, scale_sum, c.K, bias is not None, c.out)
    ctx = (rows.start, exp, got, bound, err, ulps)
    return _Tally(
        size=exp.size, nan_missing=0, nan_extra=0, over=over,
        stats=(z.size, float(np.sum(use * use)), float(np.sum(z)) + 0.0), equal=equal,
        mismatch=(exp.size, exp.size - equal, mu),
        maxima=_maxima(err, ulps, rel, use, ratio), sqnr=_sqnr_sums(data, got, rows),
        worst_use=_element(ctx, use), worst_err=_element(ctx, err),
        use_seen=over > 0 or bool((use > 0).any()), worst_nan=None)


def _tally_general(data, exp, got, profile, rows) -> _Tally:
    """The judge's quantities over rows ``rows`` of any output: NaN must match NaN,
    infinities compare as the overflow threshold, a Y* that overflowed as its unrounded
    value."""
    c = data.case
    nan_e, nan_g = np.isnan(exp), np.isnan(got)
    any_nan = bool(nan_e.any() or nan_g.any())
    nan_missing = nan_extra = 0
    if any_nan:
        nan_missing = int((nan_e & ~nan_g).sum())
        nan_extra = int((nan_g & ~nan_e).sum())
        both = ~nan_e & ~nan_g
    else:  # every mask below is all-true and skipped
        both = np.True_

    exp_x = exp_thr = extended(exp, c.out)  # exp_thr: infinities as the threshold
    got_x = extended(got, c.out)
    inf_e = np.isinf(exp)
    any_inf_e = bool(inf_e.any())
    if any_inf_e:
        # Y* overflowed: compare with the unrounded value, not the threshold, so that a
        # finite output is allowed only as close to the threshold as the bound permits.
        exp_x = exp_x.copy()
        i, j = np.nonzero(inf_e)
        exp_x[inf_e] = unrounded(data, (i + rows.start, j))
    bias = None if data.bias is None else data.bias.reshape(1, -1)
    absdot, mag = data.absdot[rows], data.mag(rows)
    u0 = None  # ulp(exp_x), where the bound's helper gives it
    if profile.exact:
        acc, bound = None, np.zeros(exp.shape)
    else:  # the allowance before the output rounding, kept for the mismatch-rate check
        acc = accumulation_allowance(absdot, mag, bias, c.K, profile, _operand_eps(c))
        if not nan_e.any():  # exp_thr is finite: the finite helper, bit for bit
            u0, bound = finite_bound_parts(np.abs(exp_thr), acc, c.out)
            u0 = None if any_inf_e else u0  # exp_x holds unrounded values there
        else:
            bound = allowance_bound(exp, acc, c.out)
    diff = got_x - exp_x
    err = np.abs(diff)
    if any_nan or any_inf_e:  # matching infinities and NaNs: no error
        err = np.where(both & ~(inf_e & (got == exp)), err, 0.0)
    inexact = err != 0  # a random mask (which outputs are exact): no np.where on it
    with np.errstate(divide="ignore", invalid="ignore"):
        use = where_or_zero(inexact, err / bound)
    over = both & (err > bound)

    signed = where_or_zero(inexact, diff)
    stats = statistics(np.where(both, signed, np.nan) if any_nan else signed, bound)

    equal = got == exp
    if any_nan:
        equal |= nan_e & nan_g
    mismatch = None
    if not profile.exact:
        if any_nan or any_inf_e:
            finite = both & np.isfinite(exp)
            acc_f, exp_f = np.broadcast_to(acc, exp.shape)[finite], exp[finite]
            count, differ = int(finite.sum()), int((finite & ~equal).sum())
        else:
            acc_f, exp_f = np.broadcast_to(acc, exp.shape), exp
            count, differ = exp.size, exp.size - int(np.count_nonzero(equal))
        mismatch = (count, differ, finite_mismatch_sum(np.abs(exp_f), acc_f, c.out))

    if u0 is None:
        u0 = ulp(np.where(both, exp_x, 0.0) if any_nan else exp_x, c.out)
    ulps = err / u0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale_sum = mag * absdot + (0.0 if bias is None else np.abs(bias))
        rel = np.where(both & np.isfinite(scale_sum) & (scale_sum > 0) & np.isfinite(err),
                       err / scale_sum, 0.0)
    tosa = tosa_fp8_bound(scale_sum, c.K, bias is not None, c.out)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(both & np.isfinite(exp) & np.isfinite(bound) & np.isfinite(tosa)
                         & (tosa > 0), bound / tosa, -np.inf)
    ctx = (rows.start, exp, got, bound, err, ulps)
    worst_use = worst_err = None
    key_pos = False
    if both.any():
        key = np.where(both, np.where(np.isinf(use), np.inf, use), -1.0)
        key_pos = bool((key > 0).any())
        worst_use = _element(ctx, key)
        worst_err = _element(ctx, np.where(both, err, -1.0))
    worst_nan = None
    odd = nan_e ^ nan_g
    if odd.any():
        mi, ni = np.unravel_index(int(np.argmax(odd)), exp.shape)
        worst_nan = {"m": int(mi) + rows.start, "n": int(ni), "got": float(got[mi, ni]),
                     "expected": float(exp[mi, ni]), "bound": 0.0, "error": math.nan,
                     "ulps": math.nan}
    return _Tally(
        size=exp.size, nan_missing=nan_missing, nan_extra=nan_extra, over=int(over.sum()),
        stats=(stats["count"], stats["sum_z2"], stats["sum_z"]),
        equal=int(np.count_nonzero(equal)), mismatch=mismatch,
        maxima=_maxima(err, ulps, rel, use, float(ratio.max())), sqnr=_sqnr_sums(data, got, rows),
        worst_use=worst_use, worst_err=worst_err, use_seen=bool(over.any()) or key_pos,
        worst_nan=worst_nan)


def _maxima(err, ulps, rel, use, tosa_ratio: float) -> dict:
    return {"max_abs_err": float(err.max()), "max_ulps": float(ulps.max()),
            "rel_err": float(rel.max()), "bound_use": float(use.max()),
            "tosa_ratio": tosa_ratio}


def _element(ctx, key: np.ndarray) -> dict:
    """The element where ``key`` is largest (``np.argmax``: first on ties, NaN first), with
    its row counted from the whole output's first; ``key`` kept for joining blocks."""
    r0, exp, got, bound, err, ulps = ctx
    mi, ni = np.unravel_index(int(np.argmax(key)), exp.shape)
    return {"key": float(key[mi, ni]), "m": int(mi) + r0, "n": int(ni),
            "got": float(got[mi, ni]), "expected": float(exp[mi, ni]),
            "bound": float(bound[mi, ni]), "error": float(err[mi, ni]),
            "ulps": float(ulps[mi, ni])}


def _sqnr_sums(data: CaseData, got: np.ndarray, rows: slice) -> tuple | None:
    """(any finite pair, noise, signal) against the unquantized float64 product (layer
    cases; None otherwise)."""
    if data.unquantized is None:
        return None
    ref = data.unquantized[rows]
    ok = np.isfinite(ref) & np.isfinite(got)
    if not ok.any():
        return (False, 0.0, 0.0)
    return (True, float(np.sum((got[ok] - ref[ok]) ** 2)), float(np.sum(ref[ok] ** 2)))


def _first_max(items: list[dict | None]) -> dict | None:
    """The largest ``key`` of the blocks' candidates, as ``np.argmax`` over the whole output
    would pick it: the earliest on ties, the first NaN before any number."""
    best = None
    for it in items:
        if it is None:
            continue
        if best is None or (math.isnan(it["key"]) and not math.isnan(best["key"])) or (
                not math.isnan(best["key"]) and it["key"] > best["key"]):
            best = it
    return best


def _combine(ts: list[_Tally]) -> _Tally:
    """One tally of the whole output from its row blocks' (in order)."""
    if len(ts) == 1:
        return ts[0]
    mm = [t.mismatch for t in ts]
    sq = [t.sqnr for t in ts]
    return _Tally(
        size=sum(t.size for t in ts), nan_missing=sum(t.nan_missing for t in ts),
        nan_extra=sum(t.nan_extra for t in ts), over=sum(t.over for t in ts),
        stats=tuple(sum(t.stats[i] for t in ts) for i in range(3)),
        equal=sum(t.equal for t in ts),
        mismatch=None if mm[0] is None else tuple(sum(x[i] for x in mm) for i in range(3)),
        maxima={k: float(np.max([t.maxima[k] for t in ts])) for k in ts[0].maxima},
        sqnr=None if sq[0] is None else (any(x[0] for x in sq), sum(x[1] for x in sq),
                                         sum(x[2] for x in sq)),
        worst_use=_first_max([t.worst_use for t in ts]),
        worst_err=_first_max([t.worst_err for t in ts]),
        use_seen=any(t.use_seen for t in ts),
        worst_nan=next((t.worst_nan for t in ts if t.worst_nan is not None), None))


def _verdict(profile: AccumProfile, t: _Tally) -> Verdict:
    """The checks, metrics and worst element from the whole output's tally."""
    failures, checks = [], []

    def fail(check: str, message: str) -> None:
        checks.append(check)
        failures.append(message)

    if t.nan_missing:
        fail("nan", f"{t.nan_missing} elements should be NaN and are not")
    if t.nan_extra:
        fail("nan", f"{t.nan_extra} elements are NaN where Y* is finite")
    if t.over:
        fail("bound", f"{t.over} of {t.size} elements exceed the {profile.name} bound")
    stats = statistics_from_sums(*t.stats)
    if stats["count"] >= 16 and not profile.exact:
        if not stats["variance_ok"]:
            fail("variance", f"variance check: sum z^2 = {stats['sum_z2']:.4g} > 0.4 T = "
                            f"{0.4 * stats['count']:.4g}")
        if not stats["bias_ok"]:
            fail("signed-bias", f"signed-bias check: |sum z| = {abs(stats['sum_z']):.4g} > 2 sqrt(T) = "
                            f"{2 * math.sqrt(stats['count']):.4g}")
    frac_exact_min = None
    if t.mismatch is not None:
        count, differ, mu = t.mismatch
        limit = mismatch_limit(mu)
        frac_exact_min = max(0.0, 1.0 - limit / count) if count else None
        if differ > limit:
            fail("mismatch-rate", f"mismatch rate: {differ} of {count} finite elements differ "
                 f"from the correctly rounded Y*; the {profile.name} profile's accumulation "
                 f"error explains at most {limit:.1f} (expected at most {mu:.1f}): a systematic "
                 "error below one output ulp (output rounding, bias, scale or epilogue)")
    m = t.maxima
    metrics = {
        "elements": int(t.size),
        "max_abs_err": m["max_abs_err"],
        "max_ulps": m["max_ulps"],
        "rel_err": m["rel_err"],
        "bound_use": m["bound_use"],
        "frac_exact": float(t.equal / t.size),
        "frac_exact_min": frac_exact_min,
        "rms_z": math.sqrt(stats["sum_z2"] / stats["count"]) if stats["count"] else 0.0,
        "mean_z": stats["sum_z"] / stats["count"] if stats["count"] else 0.0,
        "sqnr_db": _sqnr(t.sqnr),
        "tosa_ratio": m["tosa_ratio"] if m["tosa_ratio"] > -np.inf else None,
    }
    worst = t.worst_use if t.use_seen else t.worst_err
    if t.worst_nan is not None:  # a NaN mismatch is the worst element there is
        worst = t.worst_nan
    if worst is not None:
        worst = {k: v for k, v in worst.items() if k != "key"}
    return Verdict(not failures, failures, metrics, worst, checks)


def _operand_eps(case) -> float:
    """Weight-only (W8A16) kernels multiply x by ``w * s`` dequantized into x's dtype: one
    rounding of each product's operand, at x's unit roundoff (bf16 2**-8, fp16 2**-11).
    A profile that skips that rounding (fp32 dequantization, the emulation) is inside it."""
    if case.a != "none":
        return 0.0
    return 2.0 ** -(get_format(case.x).man_bits + 1)


def unrounded(data: CaseData, idx=None) -> np.ndarray:
    """float64 value of ``sa sb sum_k A B + bias`` (W8A8 cases) at the elements ``idx`` (a
    pair of index arrays), or at every element as an [M, N] array: exact products, a float64
    sum (exact for e4m3 x e4m3, within 2**-53 relative otherwise)."""
    c = data.case
    sa = data.scale_a.reshape(-1).astype(np.float64)
    sb = data.scale_b.reshape(-1).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if idx is None or len(idx[0]) * 16 > c.M * c.N:  # many elements: one GEMM is cheaper
            v = ((decode(data.a, c.fmt_a) @ decode(data.b_kn, c.fmt_b)) * sa.reshape(-1, 1)
                 * sb.reshape(1, -1))
            v = v if data.bias is None else v + data.bias.reshape(1, -1)
            return v if idx is None else v[idx]
        rows, cols = idx
        a = decode(data.a[rows], c.fmt_a)
        b = decode(data.b_kn[:, cols], c.fmt_b).T
        v = np.sum(a * b, axis=1) * (sa[rows] if sa.size > 1 else sa[0]) * (
            sb[cols] if sb.size > 1 else sb[0])
    return v if data.bias is None else v + data.bias[cols]


def _sqnr(sums: tuple | None) -> float | None:
    """SQNR (dB) of the kernel output against the unquantized float64 product (layer cases),
    from :func:`_sqnr_sums`."""
    if sums is None or not sums[0]:
        return None
    _, noise, signal = sums
    if noise == 0:
        return math.inf
    ratio = signal / noise  # a sum that overflowed (outputs past float64's square root): inf
    if math.isnan(ratio):
        return None
    return 10 * math.log10(ratio) if ratio > 0 else -math.inf
