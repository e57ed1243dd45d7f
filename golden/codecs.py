"""Bit-exact codecs: decode codes to float64, round float64 to any :class:`FloatFormat`.

Rounding is round-to-nearest-even done once, from the float64 value (no double rounding through
float32, unlike torch's and ml_dtypes' float64 casts). ``overflow`` picks what happens past the
largest finite value:

``"ieee"``      round to nearest; results beyond max become inf (formats with inf) or NaN (fn, fnuz).
``"saturate"``  finite overflow and +-inf clamp to +-max; NaN stays NaN (torch's e4m3fn cast).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .formats import FloatFormat, get_format
from .parallel import MIN_CHUNKS, map_ordered

__all__ = [
    "round_to_format",
    "round_unbounded",
    "limit_range",
    "check_overflow",
    "where_or_zero",
    "round_bits",
    "encode",
    "decode",
    "decode_table",
    "encode_table",
    "code_dtype",
    "spacing",
    "spacing_nonneg",
    "OVERFLOW_MODES",
]

OVERFLOW_MODES = ("ieee", "saturate")
_EXP_FIELD = np.uint64(0x7FF0_0000_0000_0000)


def code_dtype(fmt: FloatFormat | str) -> np.dtype:
    """Unsigned integer dtype that holds one code of ``fmt``."""
    return np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[get_format(fmt).storage_bits])


def spacing(x, fmt: FloatFormat | str) -> np.ndarray:
    """Distance from ``|x|`` to the next larger value of ``fmt`` (finite x).

    Zero and subnormals get the subnormal spacing ``2**(emin - man_bits)``. Read off the
    float64 bits: the power of two at or below ``|x|`` (its exponent field alone), at least
    ``2**emin``, times ``2**-man_bits``, every step exact. A non-finite ``x`` gets
    ``2**(max(-1, emin) - man_bits)`` (what the frexp formula gave).
    """
    fmt = get_format(fmt)
    x = np.asarray(x, np.float64)
    ax = np.abs(np.atleast_1d(x))
    out = spacing_nonneg(ax, fmt)
    with np.errstate(invalid="ignore"):
        odd = ~(ax < np.inf)
    if odd.any():
        out[odd] = 2.0 ** (max(-1, fmt.emin) - fmt.man_bits)
    return out.reshape(x.shape)


def spacing_nonneg(ax: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """:func:`spacing` of a contiguous float64 array of values >= 0, in three passes: no
    absolute value and no special case (an infinite or NaN element gives inf)."""
    out = np.bitwise_and(ax.view(np.uint64), _EXP_FIELD).view(np.float64)
    np.maximum(out, fmt.min_normal, out=out)
    out *= 2.0 ** -fmt.man_bits
    return out


def where_or_zero(cond: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.where(cond, x, 0.0)`` for a float64 ``x`` of bool ``cond``'s shape, as a new array,
    by masking x's bits: no branch per element. np.where's branch mispredicts on a random
    condition (band membership, which outputs are exact): 123 against 28 us over 32K values
    on this CPU. Kept values keep their bits (-0.0, NaN); the others are +0.0."""
    mask = np.negative(np.ascontiguousarray(cond).view(np.uint8), dtype=np.uint64)
    mask &= np.ascontiguousarray(x, np.float64).view(np.uint64)
    return mask.view(np.float64)


def check_overflow(overflow: str) -> None:
    """Raise ValueError naming ``overflow`` unless it is one of OVERFLOW_MODES."""
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow={overflow!r} is not one of {OVERFLOW_MODES}")


def round_bits(bits: np.ndarray, man_bits: int) -> np.ndarray:
    """float64 bit patterns (uint64) with the significand rounded to nearest-even at
    ``man_bits`` fraction bits, as a new uint64 array: half a quantum (less one, plus the kept
    last bit: ties go to even) is added and the dropped bits cleared, a carry moving into the
    exponent as it should (up to inf past float64's range). Right for finite values whose
    quantum is set by their own exponent (normal numbers of the target format); not for NaN."""
    drop = 52 - man_bits  # float64 significand bits below the kept ones, >= 1
    r = bits >> np.uint64(drop)
    r &= np.uint64(1)
    r += bits
    r += np.uint64((1 << (drop - 1)) - 1)
    r &= np.uint64(~((1 << drop) - 1) & (2**64 - 1))
    return r


def round_unbounded(x, fmt: FloatFormat | str) -> np.ndarray:
    """``x`` rounded to nearest-even at ``fmt``'s precision and subnormal range, with the
    exponent unbounded above (no overflow handling), as float64.

    Exact. At or above ``fmt``'s smallest normal the float64 bits are rounded
    (:func:`round_bits`). Below it (and for NaN) the quantum is the fixed power of two
    ``2**(emin - man_bits)``: scaling by it is exact and ``np.rint`` (IEEE round-half-even)
    does the only rounding.
    """
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    if fmt.man_bits >= 52:
        return x.copy()
    out = round_bits(np.atleast_1d(x).view(np.uint64), fmt.man_bits).view(np.float64)
    out = out.reshape(x.shape)
    with np.errstate(invalid="ignore"):
        low = ~(np.abs(x) >= fmt.min_normal)  # below the normal range, or NaN
        if low.any():
            q = fmt.emin - fmt.man_bits
            out[low] = np.rint(x[low] * 2.0**-q) * 2.0**q
    return out


def round_to_format(x, fmt: FloatFormat | str, overflow: str = "ieee") -> np.ndarray:
    """Round float64 ``x`` to the nearest value of ``fmt`` (ties to even), returned as float64."""
    fmt = get_format(fmt)
    check_overflow(overflow)
    x = np.asarray(x, dtype=np.float64)
    return limit_range(round_unbounded(x, fmt), fmt, overflow)


def limit_range(r: np.ndarray, fmt: FloatFormat | str, overflow: str = "ieee") -> np.ndarray:
    """``fmt``'s range applied to ``r``, values at ``fmt``'s precision with the exponent
    unbounded (:func:`round_unbounded`'s output, changed in place and returned): past max by
    ``overflow``; in formats without -0, -0 becomes +0. ``round_to_format`` of a value already
    at fmt's precision, without rounding it again."""
    fmt = get_format(fmt)
    check_overflow(overflow)
    with np.errstate(invalid="ignore"):
        over = np.abs(r) > fmt.max  # also true for +-inf, false for NaN
    if over.any():  # r keeps the sign of the value it was rounded from
        if overflow == "saturate":
            r[over] = np.copysign(fmt.max, r[over])
        elif fmt.has_inf:
            r[over] = np.copysign(np.inf, r[over])
        else:
            r[over] = np.nan
    if not fmt.has_neg_zero:
        r[r == 0] = 0.0  # fnuz formats have no -0: a negative value that rounds to 0 is +0
    return r


@cache
def decode_table(fmt_name: str) -> np.ndarray:
    """float64 value of every code of a format of at most 16 bits (read-only)."""
    fmt = get_format(fmt_name)
    if fmt.storage_bits > 16:
        raise ValueError(f"decode_table is for formats of at most 16 bits, not {fmt.name}")
    codes = np.arange(1 << fmt.storage_bits, dtype=np.int64)
    sign = np.where(codes >> (fmt.storage_bits - 1) & 1, -1.0, 1.0)
    biased = (codes >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1)
    frac = codes & ((1 << fmt.man_bits) - 1)
    mant = np.where(biased == 0, frac, frac + (1 << fmt.man_bits)).astype(np.float64)
    exp = np.maximum(biased, 1) - fmt.bias - fmt.man_bits
    vals = sign * np.ldexp(mant, exp)
    top = (1 << fmt.exp_bits) - 1
    if fmt.special == "ieee":
        vals[(biased == top) & (frac == 0)] = sign[(biased == top) & (frac == 0)] * np.inf
        vals[(biased == top) & (frac != 0)] = np.nan
    elif fmt.special == "fn":
        vals[(biased == top) & (frac == (1 << fmt.man_bits) - 1)] = np.nan
    else:  # fnuz: the negative-zero code is the NaN
        vals[1 << (fmt.storage_bits - 1)] = np.nan
    vals.flags.writeable = False
    return vals


def decode(codes, fmt: FloatFormat | str) -> np.ndarray:
    """float64 values of integer ``codes`` of ``fmt`` (any shape)."""
    fmt = get_format(fmt)
    codes = np.asarray(codes)
    if fmt.storage_bits == 32:
        return codes.astype(np.uint32).view(np.float32).astype(np.float64)
    if codes.dtype.kind not in "ui":
        raise TypeError(f"decode expects integer codes of {fmt.name}, got dtype {codes.dtype}")
    table = decode_table(fmt.name)
    flat = codes.reshape(-1)
    if flat.dtype.itemsize * 8 > fmt.storage_bits and flat.size:  # a wider dtype: check range
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi >= table.size:
            raise ValueError(f"code {lo if lo < 0 else hi} is not a code of {fmt.name} "
                             f"(0 .. {table.size - 1}); pass the codes' raw bits")
    if flat.dtype.kind == "i":  # same-width signed codes: their bits (int8 -1 is code 0xFF)
        flat = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    out = np.empty(flat.shape, np.float64)
    # Chunks of 2**20 keep the index buffer in cache; mode="clip" is unbuffered (np.take
    # buffers ``out`` in its default "raise" mode: 5x slower), and every code is in range.
    step = 1 << 20
    for i in range(0, flat.size, step):
        np.take(table, flat[i : i + step], out=out[i : i + step], mode="clip")
    return out.reshape(codes.shape)


ENCODE_CHUNK = 1 << 16
"""Values per piece of a large :func:`encode` (its temporaries stay in cache)."""


def encode(x, fmt: FloatFormat | str, overflow: str = "ieee") -> np.ndarray:
    """Codes of ``x`` (float64, or anything NumPy turns into it) rounded to ``fmt``.

    NaN becomes :attr:`FloatFormat.nan_code`; the sign of zero is kept where the format has -0.
    """
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    if x.size > ENCODE_CHUNK:  # elementwise: chunks give the same codes, in cache
        flat = x.reshape(-1)
        out = np.empty(flat.shape, code_dtype(fmt))

        def piece(i: int) -> None:
            out[i : i + ENCODE_CHUNK] = _encode(flat[i : i + ENCODE_CHUNK], fmt, overflow)

        map_ordered(piece, range(0, flat.size, ENCODE_CHUNK), min_items=MIN_CHUNKS)
        return out.reshape(x.shape)
    return _encode(x, fmt, overflow)


def _encode(x, fmt: FloatFormat, overflow: str) -> np.ndarray:
    r = round_to_format(x, fmt, overflow)
    if fmt.storage_bits > 8:
        if fmt.storage_bits == 32:
            code = r.astype(np.float32).view(np.uint32)
        elif fmt.name == "fp16":
            code = r.astype(np.float16).view(np.uint16)  # r is representable: exact cast
        else:  # bf16: the top half of the float32 bits, exact since r is representable
            code = (r.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return np.where(np.isnan(r), code.dtype.type(fmt.nan_code), code)
    # r is a value of fmt (or +-inf, NaN): exact in float32, and its top 16 bits (its bf16
    # bits: FP8 significands have at most 3 bits) are a key to its code.
    key = np.atleast_1d(r).astype(np.float32).view(np.uint32) >> np.uint32(16)
    return encode_table(fmt.name).take(key, mode="clip").reshape(r.shape)


@cache
def encode_table(fmt_name: str) -> np.ndarray:
    """Code of an 8-bit format's value, indexed by that value's bf16 bits (read-only).

    Every value of the format (and +-inf where it has them) is a bf16 value; every other
    key, NaN included, holds the format's NaN code.
    """
    fmt = get_format(fmt_name)
    if fmt.storage_bits != 8:
        raise ValueError(f"encode_table is for 8-bit formats, not {fmt.name}")
    vals = decode_table(fmt.name)
    codes = np.flatnonzero(~np.isnan(vals))
    keys = vals[codes].astype(np.float32).view(np.uint32) >> 16
    exact = (keys << np.uint32(16)).view(np.float32).astype(np.float64) == vals[codes]
    if not exact.all() or np.unique(keys).size != keys.size:  # a format bf16 cannot key
        raise ValueError(f"{fmt.name} has values that are not distinct bf16 values")
    table = np.full(1 << 16, fmt.nan_code, np.uint8)
    table[keys] = codes
    table.flags.writeable = False
    return table
