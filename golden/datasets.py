"""Named input data sets: the float64 values of the GEMM operands before FP8 quantization.

After TOSA's six dot-product test sets (zero products, large exponents, one big term, wide range,
mixed zeros, signed large range) plus what LLMs feed (Gaussian, per-channel outliers, rows of very
different magnitude, saturating values, subnormals). ``DATASETS[name].make(bits, M, N, K, fmt_a,
fmt_b)`` returns ``(a [M,K], b [K,N])``; the caller quantizes them (``encode(v, fmt, "saturate")``).

Values come from :class:`~golden.rng.Bits` only, through exact integer/power-of-two mappings or a
single IEEE rounding, so they are the same bytes everywhere. A never depends on N nor B on M, and
A and B read distinct streams (``<set>.a.*`` / ``<set>.b.*``; only ``zero`` shares its k-mask on
purpose). Every value is finite; only ``saturate`` goes beyond the format's maximum.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .formats import FloatFormat, get_format
from .rng import Bits

__all__ = [
    "ACT_MAX",
    "DATASETS",
    "DataSet",
    "get_dataset",
    "make_activations",
    "make_weights",
]

ACT_MAX = 65504.0
"""Activation values are clamped to +-ACT_MAX (fp16's max) so they stay finite in bf16 and fp16."""

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DataSet:
    """One named input data set: ``make(bits, M, N, K, fmt_a, fmt_b) -> (a [M,K], b [K,N])``."""

    name: str
    description: str
    gen: Callable[[Bits, int, int, int, FloatFormat, FloatFormat], Arrays]

    def make(self, bits: Bits, M: int, N: int, K: int, fmt_a="e4m3fn", fmt_b="e4m3fn") -> Arrays:
        """float64 values of A [M,K] and B [K,N] (not yet quantized)."""
        M, N, K = (operator.index(d) for d in (M, N, K))
        if min(M, N, K) < 0:
            raise ValueError(f"negative GEMM dimension M={M} N={N} K={K}")
        a, b = self.gen(bits, M, N, K, get_format(fmt_a), get_format(fmt_b))
        a = np.ascontiguousarray(a, dtype=np.float64)
        b = np.ascontiguousarray(b, dtype=np.float64)
        assert a.shape == (M, K) and b.shape == (K, N), (self.name, a.shape, b.shape)
        return a, b


# ---- value helpers (each reads its own streams, named from `s`) -------------------------------


def _sign(bits: Bits, s: str, shape) -> np.ndarray:
    """+-1.0 with equal probability (-1.0 where ``choice_mask(s + ".sign", shape, 0.5)``)."""
    return bits.signs(s + ".sign", shape)


def _binades(bits: Bits, s: str, shape, fmt: FloatFormat, e_lo: int, e_hi: int) -> np.ndarray:
    """Magnitudes ``(1+f) * 2**e``, e uniform in [e_lo, e_hi], f uniform; capped at ``fmt.max``.

    In the top binade (e == emax) the significand spans [1, max/2**emax] so nothing exceeds max.
    """
    e = bits.integers(s + ".exp", shape, e_lo, e_hi + 1)
    f = bits.uniform(s + ".frac", shape)
    top = fmt.max / 2.0**fmt.emax
    mant = np.where(e >= fmt.emax, 1.0 + f * (top - 1.0), 1.0 + f)
    return np.ldexp(mant, e.astype(np.int32))


def _signed_binades(bits, s, shape, fmt, e_lo, e_hi) -> np.ndarray:
    return _sign(bits, s, shape) * _binades(bits, s, shape, fmt, e_lo, e_hi)


def _sigma(fmt: FloatFormat) -> float:
    """Gaussian scale 2**(emax-2): |x| < 6 sigma <= 1.5 * 2**emax <= max (Irwin-Hall support)."""
    return 2.0 ** (fmt.emax - 2)


def _gauss(bits: Bits, s: str, shape, fmt: FloatFormat, scale: float = 1.0) -> np.ndarray:
    x = bits.normal(s + ".normal", shape)
    x *= _sigma(fmt) * scale  # in place: a large case's fresh copy costs its page faults
    return x


def _one_per_line(bits: Bits, s: str, lines: int, K: int) -> np.ndarray:
    """A random k in [0, K) for each of ``lines`` rows (A) or columns (B); empty when K == 0."""
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    return bits.integers(s + ".k", (lines,), 0, K)


# ---- the data sets ------------------------------------------------------------------------------


def _zero(bits, M, N, K, fa, fb):
    # Column k of A is nonzero exactly where row k of B is zero: every product is +-0.
    a_on = bits.choice_mask("zero.k", (K,), 0.5)
    a = _signed_binades(bits, "zero.a", (M, K), fa, fa.emin, fa.emax)
    b = _signed_binades(bits, "zero.b", (K, N), fb, fb.emin, fb.emax)
    # A's off columns as +0.0 (a multiply gives -0.0 for a negative a: "+ 0.0" clears it;
    # binade values are never 0); a multiply, not np.where, whose branch per element
    # mispredicts on a random mask.
    a *= a_on[None, :]
    a += 0.0
    return a, np.where(a_on[:, None], 0.0, b)


def _maxexp(bits, M, N, K, fa, fb):
    return (
        _signed_binades(bits, "maxexp.a", (M, K), fa, fa.emax - 2, fa.emax),
        _signed_binades(bits, "maxexp.b", (K, N), fb, fb.emax - 2, fb.emax),
    )


def _onebig(bits, M, N, K, fa, fb):
    # Per row of A: one entry in the top binade, the rest 2**-d smaller (d = 12 or the format's
    # normal range); B in [1, 2). One product ~2**emax, the others ~2**(emax-d).
    d = min(12, fa.emax - fa.emin)
    a = _signed_binades(bits, "onebig.a.small", (M, K), fa, fa.emax - d, fa.emax - d)
    big = _signed_binades(bits, "onebig.a.big", (M,), fa, fa.emax, fa.emax)
    kbig = _one_per_line(bits, "onebig.a.big", M, K)
    a[np.arange(len(kbig)), kbig] = big[: len(kbig)]
    b = _signed_binades(bits, "onebig.b", (K, N), fb, 0, 0)
    return a, b


def _range(bits, M, N, K, fa, fb):
    return (
        _signed_binades(bits, "range.a", (M, K), fa, fa.emin - fa.man_bits, fa.emax),
        _signed_binades(bits, "range.b", (K, N), fb, fb.emin - fb.man_bits, fb.emax),
    )


def _mixzero(bits, M, N, K, fa, fb):
    def side(s, shape, fmt):
        g = _gauss(bits, s, shape, fmt)
        # g * 0.0 is copysign(0.0, g) for finite g: a multiply by the kept-mask, no branch
        return g * ~bits.choice_mask(s + ".zero", shape, 0.5)

    return side("mixzero.a", (M, K), fa), side("mixzero.b", (K, N), fb)


def _signed(bits, M, N, K, fa, fb):
    # Random signs over the upper half of the normal range; in each pair of k (2j, 2j+1) B's rows
    # are equal and, for about half the (m, j), A[m, 2j+1] = -A[m, 2j]: exact cancellation of
    # large products, leaving a result much smaller than sum |a*b|.
    a = _signed_binades(bits, "signed.a", (M, K), fa, (fa.emin + fa.emax) // 2, fa.emax)
    b = _signed_binades(bits, "signed.b", (K, N), fb, (fb.emin + fb.emax) // 2, fb.emax)
    P = K // 2
    cancel = bits.choice_mask("signed.a.cancel", (M, P), 0.5)
    a[:, 1 : 2 * P : 2] = np.where(cancel, -a[:, 0 : 2 * P : 2], a[:, 1 : 2 * P : 2])
    b[1 : 2 * P : 2, :] = b[0 : 2 * P : 2, :]
    return a, b


def _gauss_set(bits, M, N, K, fa, fb):
    return _gauss(bits, "gauss.a", (M, K), fa), _gauss(bits, "gauss.b", (K, N), fb)


def _outlier(bits, M, N, K, fa, fb):
    # max(1, K // 256) columns of A scaled by [50, 100); the rest with sigma 2**(emax-9) so the
    # outliers (< 600 sigma) stay below the format max.
    a = _gauss(bits, "outlier.a", (M, K), fa, scale=2.0**-7)
    n_out = min(K, max(1, K // 256))
    order = np.argsort(bits.uint64("outlier.a.cols", K), kind="stable")
    cols = np.sort(order[:n_out])
    factor = 50.0 + 50.0 * bits.uniform("outlier.a.factor", (n_out,))
    a[:, cols] *= factor[None, :]
    return a, _gauss(bits, "outlier.b", (K, N), fb)


def _rowscale(bits, M, N, K, fa, fb):
    # Row m of A is Gaussian times 2**u_m, u_m uniform in [-(emax - emin), 0].
    u = bits.integers("rowscale.a.u", (M,), -(fa.emax - fa.emin), 1)
    a = _gauss(bits, "rowscale.a", (M, K), fa) * np.ldexp(1.0, u.astype(np.int32))[:, None]
    return a, _gauss(bits, "rowscale.b", (K, N), fb)


def _saturate(bits, M, N, K, fa, fb):
    # Gaussian with 1/8 of the entries, plus one per row of A / column of B, in (max, 4 max).
    def over(s, shape, fmt, at=None):
        """Element ``i`` of a ``shape`` draw: sign * max * (1 + 2**-6 + 3 u); ``at``: only
        those elements (flat indices)."""
        sign = bits.signs(s + ".sign", shape, at=at)
        return sign * (fmt.max * (1.0 + 2.0**-6 + 3.0 * bits.uniform(s, shape, at=at)))

    def masked_over(x, s, fmt):
        """``x`` with the elements of stream ``s + ".mask"`` (p = 1/8) set to ``over``'s."""
        at = np.flatnonzero(bits.choice_mask(s + ".mask", x.shape, 0.125))
        np.put(x, at, over(s + ".over", x.shape, fmt, at))
        return x

    a = masked_over(_gauss(bits, "saturate.a", (M, K), fa), "saturate.a", fa)
    k = _one_per_line(bits, "saturate.a.row", M, K)
    a[np.arange(len(k)), k] = over("saturate.a.row", (len(k),), fa)
    b = masked_over(_gauss(bits, "saturate.b", (K, N), fb), "saturate.b", fb)
    k = _one_per_line(bits, "saturate.b.col", N, K)
    b[k, np.arange(len(k))] = over("saturate.b.col", (len(k),), fb)
    return a, b


def _subnormal(bits, M, N, K, fa, fb):
    # |x| uniform in [0, largest subnormal) (rounds to a subnormal or 0), a quarter exactly +-0.
    def side(s, shape, fmt):
        mag = bits.uniform(s + ".mag", shape) * (fmt.min_normal - fmt.min_subnormal)
        v = _sign(bits, s, shape) * mag
        return v * ~bits.choice_mask(s + ".zero", shape, 0.25)  # v * 0.0 where masked

    return side("subnormal.a", (M, K), fa), side("subnormal.b", (K, N), fb)


DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in (
        DataSet("zero", "all products zero: A's nonzero k-columns meet B's zero k-rows", _zero),
        DataSet("maxexp", "random signs, magnitudes in the top 3 binades of each format", _maxexp),
        DataSet(
            "onebig",
            "one top-binade term per row of A at a random k, the rest 2^-12 smaller",
            _onebig,
        ),
        DataSet(
            "range", "exponents uniform over the whole format range, subnormals included", _range
        ),
        DataSet("mixzero", "Gaussian with about half the entries exactly +-0", _mixzero),
        DataSet(
            "signed",
            "random signs over the upper half of the range, exact cancelling pairs",
            _signed,
        ),
        DataSet(
            "gauss", "Gaussian, sigma 2^(emax-2) so |x| stays within the format max", _gauss_set
        ),
        DataSet("outlier", "Gaussian activations with a few K-columns 50-100x larger", _outlier),
        DataSet(
            "rowscale",
            "rows of A scaled by 2^u, u over the format's normal exponent span",
            _rowscale,
        ),
        DataSet(
            "saturate",
            "Gaussian with 1/8 of entries (at least one per row/col) in (max, 4max)",
            _saturate,
        ),
        DataSet(
            "subnormal",
            "magnitudes below the smallest normal of the format, a quarter zero",
            _subnormal,
        ),
    )
}


def get_dataset(name: str) -> DataSet:
    """The data set called ``name``; an unknown name raises ValueError listing the valid ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}") from None


def make_activations(bits: Bits, M: int, K: int, name: str, fmt="e4m3fn") -> np.ndarray:
    """Layer activations x [M,K] (float64, for the caller to round to bf16/fp16).

    The A operand of data set ``name`` for FP8 format ``fmt`` (the same values as the op-level
    case, i.e. in units where a static scale of 1 hits the format's range), clamped to +-ACT_MAX.
    Under dynamic quantization only the shape of the distribution matters (outlier, rowscale,
    zero, ...); ``saturate`` and ``subnormal`` keep their meaning for a static scale of 1.
    """
    a, _ = get_dataset(name).make(bits, M, 0, K, fmt, fmt)
    return np.clip(a, -ACT_MAX, ACT_MAX)


def make_weights(bits: Bits, N: int, K: int, name: str, fmt="e4m3fn") -> np.ndarray:
    """Layer weights W [N,K] (float64, to be quantized): B of data set ``name``, transposed."""
    _, b = get_dataset(name).make(bits, 0, N, K, fmt, fmt)
    return np.ascontiguousarray(b.T)
