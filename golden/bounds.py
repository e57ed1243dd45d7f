"""Per-element error bounds from a declared accumulation profile, and the two statistical checks.

A kernel output ``Y`` passes element-wise when (DESIGN §4)::

    |Y - Y*| <= ulp_out(Y*) + |sa sb| * sum_k |A||B| * eps_acc(K) + |bias| * u_epi

``Y*`` is the correctly rounded exact result. The first term covers the kernel's own output
rounding; ``eps_acc`` is what the profile's accumulator may lose over K terms (including the
fp32 epilogue that applies the scales); ``u_epi`` covers the bias add. Infinities compare as
the overflow threshold (so a value just past it may come out inf or max, as rounding allows);
NaN must match NaN exactly.

Over all T outputs of a case, with ``z = (Y - Y*) / bound`` (TOSA's dot-product statistics):
``sum(z**2) <= 0.4 T`` (variance) and ``|sum(z)| <= 2 sqrt(T)`` (signed bias).

The variance test sees a systematic error below one output ulp (a truncating output rounding,
a one-ulp bias; DESIGN §4) only where the bound is about one ulp, so that z is near 1. The
mismatch-rate check also sees it where the bound is wider: a kernel whose pre-rounding value
is within ``acc`` of the exact one rounds to a value other than Y* only where a rounding
boundary lies between the two, so element i differs from Y* with probability at most
``p_i = min(1, 2 acc_i / ulp_i)`` (:func:`mismatch_probability`), and the count of such
elements stays below :func:`mismatch_limit` of ``sum p_i`` except with probability
``MISMATCH_ALPHA``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .codecs import spacing, spacing_nonneg
from .formats import FloatFormat, get_format

__all__ = [
    "AccumProfile",
    "PROFILES",
    "get_profile",
    "element_bound",
    "extended",
    "ulp",
    "statistics",
    "statistics_from_sums",
    "tosa_fp8_bound",
    "tosa_ratio_max",
    "accumulation_allowance",
    "allowance_bound",
    "finite_bound_parts",
    "mismatch_probability",
    "finite_mismatch_sum",
    "mismatch_limit",
    "MISMATCH_ALPHA",
]


@dataclass(frozen=True)
class AccumProfile:
    """How a kernel accumulates a dot product, as far as its error goes.

    ``frac_bits``: fraction bits kept by the inner accumulator (23 for fp32).
    ``block``: number of products summed at that precision before the partial sum is added
    to an outer accumulator of ``outer_frac_bits``; None means the whole K at ``frac_bits``.
    ``truncates``: the inner accumulator rounds toward zero (error up to 1 ulp, not 1/2).
    ``exact``: the kernel claims correctly rounded output of the exact value (bound 0).
    """

    name: str
    frac_bits: int = 23
    block: int | None = None
    outer_frac_bits: int = 23
    truncates: bool = False
    exact: bool = False

    def eps_acc(self, k: int) -> float:
        """Worst relative loss (against ``sum |a b|``) of summing ``k`` products, plus epilogue."""
        if self.exact:
            return 0.0
        u_in = 2.0 ** -(self.frac_bits + (0 if self.truncates else 1))
        u_out = 2.0 ** -(self.outer_frac_bits + 1)
        if self.block is None:
            inner = max(k - 1, 0) * u_in
            outer = 0.0
        else:
            inner = max(min(k, self.block) - 1, 0) * u_in
            outer = max(math.ceil(k / self.block) - 1, 0) * u_out * (1 + inner)
        return inner + outer + 3 * u_out  # +2 scale products, +1 fp32 epilogue slack

    @property
    def u_epi(self) -> float:
        """Relative error of the epilogue's bias add."""
        return 0.0 if self.exact else 2.0 ** -(self.outer_frac_bits + 1)

    def describe(self) -> str:
        if self.exact:
            return f"{self.name}: exact accumulation, correctly rounded output"
        blk = "whole K" if self.block is None else f"blocks of {self.block}"
        rnd = "truncating" if self.truncates else "nearest"
        return (
            f"{self.name}: {self.frac_bits} fraction bits ({rnd}) over {blk}, "
            f"fp{self.outer_frac_bits + 9} outer accumulation"
        )


PROFILES: dict[str, AccumProfile] = {
    p.name: p
    for p in (
        AccumProfile("exact", exact=True),
        AccumProfile("fp32"),
        AccumProfile("fp16", frac_bits=10),
        # Measured on an H100 (torch 2.11 + CUDA 13, `python -m conformance.probe`, committed
        # in baselines/h100/): cuBLASLt's FP8 path keeps 13 fraction bits (L + s - L loses s
        # at 2**-14 of L), truncating, and adds each block of 128 products into an fp32
        # accumulator; with use_fast_accum it never does. (An earlier probe read "15": it
        # started at 2**-16 of the leading product, so 15 was its floor, not a measurement.)
        AccumProfile("acc13-trunc-blk128", frac_bits=13, block=128, truncates=True),
        AccumProfile("acc13-trunc", frac_bits=13, truncates=True),
    )
}


def get_profile(name: str) -> AccumProfile:
    """Look a profile up by name; an unknown name lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown accumulation profile {name!r}; known: {', '.join(PROFILES)}"
        ) from None


def ulp(x, fmt: FloatFormat | str) -> np.ndarray:
    """Spacing of ``fmt`` values just above ``|x|`` (finite x; subnormal spacing at 0)."""
    return spacing(x, fmt)


def extended(y, fmt: FloatFormat | str) -> np.ndarray:
    """``y`` with +-inf replaced by the signed overflow threshold of ``fmt`` (max + ulp/2).

    Without infinities that is ``y`` itself (float64; not a copy): treat it as read-only."""
    fmt = get_format(fmt)
    y = np.asarray(y, np.float64)
    inf = np.isinf(y)
    if not inf.any():
        return y
    thr = fmt.max + float(ulp(fmt.max, fmt)) / 2
    return np.where(inf, np.copysign(thr, y), y)


def element_bound(expected, absdot, scale, bias, k: int, out_fmt, profile: AccumProfile,
                  operand_eps: float = 0.0):
    """Allowed ``|Y - Y*|`` per element.

    ``expected`` is Y*, ``absdot`` is ``sum_k |A||B|`` (float64, an upper bound), ``scale`` is
    ``|sa sb|`` broadcastable to the output, ``bias`` the bias values or None.
    ``operand_eps``: relative rounding of each product's operand before the multiply (a
    weight-only kernel dequantizes ``w * s`` into the activation dtype: its unit roundoff).
    """
    out = get_format(out_fmt)
    if profile.exact:
        return np.zeros(np.shape(expected))
    return allowance_bound(expected,
                           accumulation_allowance(absdot, scale, bias, k, profile, operand_eps),
                           out)


def allowance_bound(expected, acc, out_fmt) -> np.ndarray:
    """:func:`element_bound` from the pre-rounding allowance ``acc``
    (:func:`accumulation_allowance`), for a caller that needs ``acc`` as well."""
    out = get_format(out_fmt)
    ye = np.abs(extended(expected, out))
    u0 = ulp(ye, out)
    # Y* is within u0/2 of the exact value, the kernel's pre-rounding value within acc of it,
    # and the kernel's own rounding adds half an ulp at that (possibly larger) magnitude.
    return u0 / 2 + acc + ulp(ye + u0 / 2 + acc, out) / 2


def finite_bound_parts(ye: np.ndarray, acc, out_fmt) -> tuple[np.ndarray, np.ndarray]:
    """``(ulp(Y*), allowance_bound(Y*, acc))`` from ``ye = |Y*|`` for finite Y*, bit for bit,
    in fewer passes and temporaries (the judge's fast path over large outputs)."""
    out = get_format(out_fmt)
    u0 = spacing_nonneg(ye, out)
    half = u0 / 2
    bound = half + acc
    top = ye + half
    top += acc
    top = spacing_nonneg(top, out)  # NaN or inf acc: bound is NaN or inf either way
    top /= 2
    bound += top
    return u0, bound


def accumulation_allowance(absdot, scale, bias, k: int, profile: AccumProfile,
                           operand_eps: float = 0.0):
    """How far the profile lets a kernel's value *before* its output rounding be from the exact
    one: ``|sa sb| sum_k |A||B| (eps_acc(K) + operand_eps) + |bias| u_epi`` (arguments as for
    :func:`element_bound`, which adds the two output roundings to it)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf scale x zero: NaN, judged as NaN
        acc = np.abs(scale) * absdot * (profile.eps_acc(k) + operand_eps)
        if bias is not None:
            acc = acc + np.abs(bias) * profile.u_epi
    return acc


# One case in 10**9 may exceed the limit by chance: with thousands of cases per run and per
# seed, a correct kernel practically never fails the check.
MISMATCH_ALPHA = 1e-9


def mismatch_probability(expected, acc, out_fmt) -> np.ndarray:
    """Upper bound on the chance that a kernel within ``acc`` of the exact value before its
    round-to-nearest output rounding returns something other than Y* (``expected``).

    The two roundings differ only where a rounding boundary (a midpoint of ``out_fmt``) lies
    within ``acc`` of the exact value; with the exact value's position inside an output ulp
    spread uniformly (scales are arbitrary float32 values), that has probability at most
    ``2 acc / ulp`` (both sides), with the ulp taken at ``|Y*| - acc`` (the smaller spacing
    below a power of two). 1 where Y* or ``acc`` is not finite.
    """
    out = get_format(out_fmt)
    ye = np.abs(extended(expected, out))
    with np.errstate(invalid="ignore", over="ignore"):
        u = ulp(np.maximum(ye - acc, 0.0), out)
        p = np.minimum(1.0, 2.0 * acc / u)
    return np.where(np.isfinite(p), p, 1.0)


def finite_mismatch_sum(ye: np.ndarray, acc, out_fmt) -> float:
    """``mismatch_probability(Y*, acc).sum()`` from ``ye = |Y*|`` for finite Y*, bit for bit
    (the judge's fast path): the NaN-to-1 step only runs where the plain sum is not finite."""
    out = get_format(out_fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        t = ye - acc
        np.maximum(t, 0.0, out=t)
        u = spacing_nonneg(t, out)  # where t is NaN: inf, and p below NaN as with ulp()
        p = 2.0 * acc / u
        np.minimum(p, 1.0, out=p)
    total = float(p.sum())
    return total if math.isfinite(total) else float(np.where(np.isfinite(p), p, 1.0).sum())


def mismatch_limit(mu: float, alpha: float = MISMATCH_ALPHA) -> float:
    """Most elements that may differ from Y* when each does so independently with probabilities
    summing to at most ``mu``: Bernstein's inequality for a sum of Bernoulli variables,
    ``P(count >= mu + s) <= exp(-s**2 / (2 (mu + s / 3))) = alpha``."""
    t = math.log(1.0 / alpha)
    return mu + t / 3 + math.sqrt((t / 3) ** 2 + 2.0 * mu * t)


def statistics(err: np.ndarray, bound: np.ndarray) -> dict:
    """TOSA-style variance and signed-bias statistics of ``err / bound`` over finite elements.

    Elements with a zero bound are left out (they are judged element-wise only).
    """
    ok = np.isfinite(err) & (bound > 0)
    z = err[ok] / bound[ok]
    return statistics_from_sums(int(z.size), float(np.sum(z * z)), float(np.sum(z)))


def statistics_from_sums(count: int, sum_z2: float, sum_z: float) -> dict:
    """:func:`statistics` from its three sums (``z`` over ``count`` elements), for a caller
    that sums ``z`` piece by piece."""
    return {
        "count": count,
        "sum_z2": sum_z2,
        "sum_z": sum_z,
        "variance_ok": sum_z2 <= 0.4 * count,
        "bias_ok": abs(sum_z) <= 2.0 * math.sqrt(count),
    }


def tosa_fp8_bound(size, k: int, has_bias: bool, out_fmt) -> np.ndarray:
    """TOSA's allowed ``|Y - exact|`` per element for an FP8 dot product, for comparison.

    ``size`` is TOSA's ``bnd``: ``|sa sb| sum_k |A||B| + |bias|``. TOSA's reference model
    (``reference_model/src/verify/verify_dot_product.cc``) allows ``2 ksb`` units of
    ``max(bnd 2**-(1 + frac_out), normal_min_out)`` with ``ksb = K`` (``K + 1`` with a bias);
    for FP8 inputs ``ksb`` is relaxed to ``max(ksb, min(ksb, 64) 2**10)`` (DESIGN §4). Zero
    where ``size`` is zero (TOSA then requires an exact zero); inf where it is not finite.
    """
    size = np.asarray(size, np.float64)
    tosa = _tosa_positive(size, k, has_bias, out_fmt)
    with np.errstate(invalid="ignore"):
        return np.where(size == 0, 0.0, np.where(np.isfinite(size), tosa, np.inf))


def _tosa_positive(size: np.ndarray, k: int, has_bias: bool, out_fmt) -> np.ndarray:
    """:func:`tosa_fp8_bound` where ``size`` is positive and finite."""
    fmt = get_format(out_fmt)
    ksb = k + (1 if has_bias else 0)
    ksb = max(ksb, min(ksb, 64) * 2**10)
    unit = np.maximum(size * 2.0 ** -(1 + fmt.man_bits), 2.0 ** fmt.emin)
    unit *= float(2 * ksb)
    return unit


def tosa_ratio_max(bound: np.ndarray, size: np.ndarray, k: int, has_bias: bool,
                   out_fmt) -> float:
    """Largest ``bound / tosa_fp8_bound(size, ...)`` over the elements where TOSA's bound is
    positive and finite, -inf where there is none; for finite ``bound``. Where every ``size``
    is positive and finite (most outputs) that is one division, not the masked one."""
    size = np.asarray(size, np.float64)
    if size.size and size.min() > 0 and size.max() < np.inf:
        return float((bound / _tosa_positive(size, k, has_bias, out_fmt)).max())
    tosa = tosa_fp8_bound(size, k, has_bias, out_fmt)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((tosa > 0) & (tosa < np.inf), bound / tosa, -np.inf)
    return float(ratio.max()) if ratio.size else -math.inf
