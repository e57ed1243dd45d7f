"""The judge: compare a kernel's output with the reference and the declared profile's bound.

A case passes when (1) the output has shape [M, N], (2) NaN appears exactly where Y* is NaN,
(3) every element is within its bound (``golden.bounds.element_bound``; zero for an exact
profile) with infinities compared as the overflow threshold, (4) TOSA's variance and
signed-bias statistics hold over all outputs, and (5) no more elements differ from Y* than the
profile's accumulation error can explain (the mismatch-rate check,
``golden.bounds.mismatch_limit``). Errors below one output ulp that every element shares (a
truncating output rounding, a one-ulp bias) pass (3); (4) sees them where the bound is about
one ulp, (5) also where it is wider.
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
    mismatch_limit,
    mismatch_probability,
    statistics,
    tosa_fp8_bound,
    ulp,
)
from golden.cases import CaseData
from golden.codecs import decode
from golden.formats import get_format

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


def judge(data: CaseData, got: np.ndarray, profile: AccumProfile) -> Verdict:
    """Compare ``got`` (float64 values) with ``data.expected`` under ``profile``."""
    c = data.case
    exp = data.expected
    got = np.asarray(got, np.float64)
    if got.shape != exp.shape:
        return Verdict(False, [f"output shape {got.shape} != expected {exp.shape} (M, N)"],
                       checks=["shape"])
    if exp.size == 0:
        return Verdict(True, metrics={"elements": 0})

    failures, checks = [], []

    def fail(check: str, message: str) -> None:
        checks.append(check)
        failures.append(message)

    nan_e, nan_g = np.isnan(exp), np.isnan(got)
    any_nan = bool(nan_e.any() or nan_g.any())
    if any_nan:
        if (nan_e & ~nan_g).any():
            fail("nan", f"{int((nan_e & ~nan_g).sum())} elements should be NaN and are not")
        if (nan_g & ~nan_e).any():
            fail("nan", f"{int((nan_g & ~nan_e).sum())} elements are NaN where Y* is finite")
        both = ~nan_e & ~nan_g
    else:  # the usual case: every mask below is all-true and skipped
        both = np.True_

    # Passes over [M, N] are the judge's cost (M = 8192 outputs of a large layer): the
    # all-finite case skips every mask, and each quantity is computed once.
    exp_x = extended(exp, c.out)
    got_x = extended(got, c.out)
    inf_e = np.isinf(exp)
    any_inf_e = bool(inf_e.any())
    if any_inf_e:
        # Y* overflowed: compare with the unrounded value, not the threshold, so that a
        # finite output is allowed only as close to the threshold as the bound permits.
        exp_x = exp_x.copy()
        exp_x[inf_e] = unrounded(data, np.nonzero(inf_e))
    bias = None if data.bias is None else data.bias.reshape(1, -1)
    if profile.exact:
        acc, bound = None, np.zeros(exp.shape)
    else:  # the allowance before the output rounding, kept for the mismatch-rate check
        acc = accumulation_allowance(data.absdot, data.scale_mag, bias, c.K, profile,
                                     _operand_eps(c))
        bound = allowance_bound(exp, acc, c.out)
    diff = got_x - exp_x
    err = np.abs(diff)
    if any_nan or any_inf_e:  # matching infinities and NaNs: no error
        err = np.where(both & ~(inf_e & (got == exp)), err, 0.0)
    zero = err == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        use = np.where(zero, 0.0, err / bound)
    over = both & (err > bound)
    if over.any():
        fail("bound", f"{int(over.sum())} of {exp.size} elements exceed the {profile.name} bound")

    signed = np.where(zero, 0.0, diff)
    stats = statistics(np.where(both, signed, np.nan) if any_nan else signed, bound)
    if stats["count"] >= 16 and not profile.exact:
        if not stats["variance_ok"]:
            fail("variance", f"variance check: sum z^2 = {stats['sum_z2']:.4g} > 0.4 T = "
                            f"{0.4 * stats['count']:.4g}")
        if not stats["bias_ok"]:
            fail("signed-bias", f"signed-bias check: |sum z| = {abs(stats['sum_z']):.4g} > 2 sqrt(T) = "
                            f"{2 * math.sqrt(stats['count']):.4g}")

    equal = got == exp
    if any_nan:
        equal |= nan_e & nan_g
    frac_exact_min = None
    if not profile.exact:
        if any_nan or any_inf_e:
            finite = both & np.isfinite(exp)
            acc_f, exp_f = np.broadcast_to(acc, exp.shape)[finite], exp[finite]
            count, differ = int(finite.sum()), int((finite & ~equal).sum())
        else:
            acc_f, exp_f = np.broadcast_to(acc, exp.shape), exp
            count, differ = exp.size, exp.size - int(np.count_nonzero(equal))
        mu = float(mismatch_probability(exp_f, acc_f, c.out).sum())
        limit = mismatch_limit(mu)
        frac_exact_min = max(0.0, 1.0 - limit / count) if count else None
        if differ > limit:
            fail("mismatch-rate", f"mismatch rate: {differ} of {count} finite elements differ "
                 f"from the correctly rounded Y*; the {profile.name} profile's accumulation "
                 f"error explains at most {limit:.1f} (expected at most {mu:.1f}): a systematic "
                 "error below one output ulp (output rounding, bias, scale or epilogue)")

    ulps = err / ulp(np.where(both, exp_x, 0.0) if any_nan else exp_x, c.out)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale_sum = data.scale_mag * data.absdot + (0.0 if bias is None else np.abs(bias))
        rel = np.where(both & np.isfinite(scale_sum) & (scale_sum > 0) & np.isfinite(err),
                       err / scale_sum, 0.0)
    tosa = tosa_fp8_bound(scale_sum, c.K, bias is not None, c.out)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(both & np.isfinite(exp) & np.isfinite(bound) & np.isfinite(tosa)
                         & (tosa > 0), bound / tosa, -np.inf)
    tosa_max = float(ratio.max())
    metrics = {
        "elements": int(exp.size),
        "max_abs_err": float(err.max()),
        "max_ulps": float(ulps.max()),
        "rel_err": float(rel.max()),
        "bound_use": float(use.max()),
        "frac_exact": float(np.count_nonzero(equal) / exp.size),
        "frac_exact_min": frac_exact_min,
        "rms_z": math.sqrt(stats["sum_z2"] / stats["count"]) if stats["count"] else 0.0,
        "mean_z": stats["sum_z"] / stats["count"] if stats["count"] else 0.0,
        "sqnr_db": _sqnr(data, got),
        "tosa_ratio": tosa_max if tosa_max > -np.inf else None,
    }
    worst = None
    if both.any():
        key = np.where(both, np.where(np.isinf(use), np.inf, use), -1.0)
        if not over.any() and not (key > 0).any():
            key = np.where(both, err, -1.0)
        mi, ni = np.unravel_index(int(np.argmax(key)), exp.shape)
        worst = {"m": int(mi), "n": int(ni), "got": float(got[mi, ni]),
                 "expected": float(exp[mi, ni]), "bound": float(bound[mi, ni]),
                 "error": float(err[mi, ni]), "ulps": float(ulps[mi, ni])}
    if (nan_e ^ nan_g).any():  # a NaN mismatch is the worst element there is
        mi, ni = np.unravel_index(int(np.argmax(nan_e ^ nan_g)), exp.shape)
        worst = {"m": int(mi), "n": int(ni), "got": float(got[mi, ni]),
                 "expected": float(exp[mi, ni]), "bound": 0.0, "error": math.nan,
                 "ulps": math.nan}
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


def _sqnr(data: CaseData, got: np.ndarray) -> float | None:
    """SQNR (dB) of the kernel output against the unquantized float64 product (layer cases)."""
    ref = data.unquantized
    if ref is None:
        return None
    ok = np.isfinite(ref) & np.isfinite(got)
    if not ok.any():
        return None
    noise = float(np.sum((got[ok] - ref[ok]) ** 2))
    signal = float(np.sum(ref[ok] ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf
