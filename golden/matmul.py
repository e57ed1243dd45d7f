"""Exact FP8 scaled matmul, correctly rounded: ``Y* = round_out(sa * sb * sum_k A8 B8 + bias)``.

How exactness is reached (proved against Python fractions in tests/test_matmul_exact.py):

1. Every FP8 value is an integer multiple of its format's smallest subnormal, so a dot product
   is an integer multiple of a fixed quantum. An operand is split into exponent *bands*: a band
   holds the values whose magnitude lies in ``[2**lo, 2**hi)``; they are multiples of
   ``2**(lo - man_bits)`` (or of the subnormal quantum for the lowest band), so a band spans at
   most ``w`` bits. A band-pair GEMM of ``Kc`` terms then spans ``w_a + w_b + log2(Kc)`` bits:
   when that is at most 53 every partial sum is an integer below 2**53 in units of the quantum,
   hence exact in float64 in any summation order (BLAS blocking, FMA, threads).
   e4m3 x e4m3 needs one band each up to K = 2**17; e5m2 mixes need two to four GEMMs.
2. The exact dot product is therefore a short list of float64 *terms* whose exact sum it is.
   ``round_out(P * sum(terms) + bias)`` is first computed in float64 with a rigorous
   per-element error bound; where that bound cannot change the rounding (nearly everywhere)
   the fast result is the correctly rounded one. The few elements within the bound of a
   rounding boundary (ties, cancellation) are recomputed with exact rational arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import numpy as np

from .codecs import (
    decode,
    decode_table,
    limit_range,
    round_bits,
    round_to_format,
    round_unbounded,
    spacing_nonneg,
    where_or_zero,
)
from .formats import FloatFormat, get_format
from .parallel import map_ordered, workers

__all__ = [
    "exact_dot_terms",
    "round_sum_exact",
    "scaled_mm_exact",
    "abs_dot",
    "abs_dot_codes",
    "band_plan",
    "numpy_dot",
    "dot_plan",
    "single_band",
    "grouped_mm_exact",
]

_U = 2.0**-53  # float64 unit roundoff
_MAX_CHUNK_K = 1 << 16


def _bands(fmt: FloatFormat, width: int) -> list[tuple[float, float]]:
    """Magnitude bands ``[lo, hi)`` of ``fmt`` that each span at most ``width`` bits."""
    if width <= fmt.man_bits:
        raise ValueError(f"band width {width} too small for {fmt.name}")
    bands = []
    hi = fmt.emax + 1
    bottom = fmt.emin - fmt.man_bits  # exponent of the subnormal quantum
    while True:
        lo = hi - (width - fmt.man_bits)
        if lo <= fmt.emin or hi - bottom <= width:
            bands.append((0.0, 2.0**hi))
            return bands[::-1]
        bands.append((2.0**lo, 2.0**hi))
        hi = lo


@cache
def band_plan(fmt_a: str, fmt_b: str, k: int) -> tuple[list, list]:
    """Bands of A and B with the fewest band-pair GEMMs that stay exact for ``k`` terms
    (cached: the search costs about 0.6 ms; callers must not modify the lists)."""
    fa, fb = get_format(fmt_a), get_format(fmt_b)
    budget = 53 - max(1, math.ceil(math.log2(max(k, 2))))
    best = None
    for wa in range(fa.man_bits + 1, budget - fb.man_bits):
        ba, bb = _bands(fa, wa), _bands(fb, budget - wa)
        if best is None or len(ba) * len(bb) < len(best[0]) * len(best[1]):
            best = (ba, bb)
    if best is None:
        raise ValueError(f"cannot split {fa.name} x {fb.name} exactly for K={k}")
    return best


def _split(vals: np.ndarray, bands) -> list[np.ndarray]:
    """One copy of ``vals`` per band, zero outside it (non-finite values stay in the top band)."""
    if len(bands) == 1:
        return [vals]
    mag = np.abs(vals)
    out = []
    for i, (lo, hi) in enumerate(bands):
        top = i == len(bands) - 1
        keep = (mag >= lo) & ((mag < hi) | top)
        out.append(where_or_zero(keep, vals))  # band membership is random: no np.where
    return out


def exact_dot_terms(a_vals: np.ndarray, fmt_a: str, b_vals: np.ndarray, fmt_b: str) -> list:
    """Float64 ``[M, N]`` arrays whose exact sum is ``A @ B`` for FP8-valued A, B (finite).

    ``a_vals`` [M, K] and ``b_vals`` [K, N] are float64 arrays of FP8 values of the given
    formats. K is cut into chunks of at most 2**16 so each band-pair GEMM is exact.
    """
    m, k = a_vals.shape
    n = b_vals.shape[1]
    if k == 0 or m == 0 or n == 0:
        return [np.zeros((m, n))]
    terms = []
    for k0 in range(0, k, _MAX_CHUNK_K):
        a_c, b_c = a_vals[:, k0 : k0 + _MAX_CHUNK_K], b_vals[k0 : k0 + _MAX_CHUNK_K]
        bands_a, bands_b = band_plan(fmt_a, fmt_b, a_c.shape[1])
        for a_part in _split(a_c, bands_a):
            for b_part in _split(b_c, bands_b):
                terms.append(a_part @ b_part)
    return terms


def abs_dot(a_vals: np.ndarray, b_vals: np.ndarray) -> np.ndarray:
    """``sum_k |A||B|`` rounded upward enough to be an upper bound (relative slack K * 2**-52)."""
    return _round_up(np.abs(a_vals) @ np.abs(b_vals), a_vals.shape[1])


def _round_up(s: np.ndarray, k: int) -> np.ndarray:
    """``s`` (a float64 sum of ``k`` non-negative terms) times ``1 + (k + 2) 2**-52``, in place:
    above the exact sum whatever the summation order."""
    s *= 1.0 + (k + 2) * 2.0**-52
    return s


# --- one-band GEMMs straight from the codes -------------------------------------------------
#
# When one band of each operand covers the whole of K (e4m3 x e4m3 up to K = 2**17), the
# float64 GEMM of the decoded values is exact in any summation order, on any BLAS or device.
# A *dot* computes it from the codes and per-code value tables:
#     dot(a_codes [M,K], b_codes [K,N], table_a, table_b) -> table_a[A] @ table_b[B]
# as a new, writable float64 [M, N] array (the caller rounds it in place and keeps it).
# :func:`numpy_dot` is the default; the suite's ``--reference-device`` passes one that runs
# on an accelerator (conformance/device_reference.py).

_ONE_GEMM_ELEMENTS = 1 << 24  # decoded elements of A and B together below which: one GEMM
_BLOCK = 4096  # columns of B (N blocks) or terms of K (K blocks) per block of a larger GEMM


def single_band(fmt_a: str, fmt_b: str, k: int) -> bool:
    """True when one band of each operand keeps a K-term GEMM exact in any summation order."""
    try:
        bands_a, bands_b = band_plan(fmt_a, fmt_b, max(k, 1))
    except ValueError:
        return False
    return len(bands_a) == len(bands_b) == 1


def _lookup(table: np.ndarray, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``table[codes]`` for codes known to be in range (unbuffered ``np.take``)."""
    return np.take(table, codes, out=out, mode="clip")


def numpy_dot(a_codes: np.ndarray, b_codes: np.ndarray, table_a: np.ndarray,
              table_b: np.ndarray) -> np.ndarray:
    """``table_a[A] @ table_b[B]`` by NumPy's float64 GEMM (see the note above).

    Operands of up to ``_ONE_GEMM_ELEMENTS`` decoded values together go in one GEMM. A larger
    product is computed in blocks of ``_BLOCK`` decoded into reused buffers, whichever way
    writes less fresh memory (:func:`dot_plan`): columns of B, with A decoded once, each
    block's GEMM writing straight into its columns of the output; or terms of K, each block's
    GEMM added to the output. Exactness makes the sums' order irrelevant. Why blocks: the
    decoded operands are 8 times their codes, and fresh memory costs more than the GEMM's
    extra passes. Measured on the 2-core VM at 8192 x 8192 x 28672, bare float64 GEMM 35.6 to
    36.9 s: the decoded GEMM took 46.9 s in one GEMM, 46.0 s in column blocks and 41.4 s in
    K blocks; profiled in one GEMM, NumPy's ``take`` writing the 3.5 GiB of fresh pages took
    11.3 s of a 48.1 s reference.
    """
    m, k = a_codes.shape
    n = b_codes.shape[1]
    plan = dot_plan(m, n, k)[0]
    if plan == "one":
        return _lookup(table_a, a_codes) @ _lookup(table_b, b_codes)
    y = np.empty((m, n))
    if plan == "columns":
        av = _lookup(table_a, a_codes)
        b_buf = np.empty((k, min(n, _BLOCK)))
        for c0 in range(0, n, _BLOCK):
            w = min(n, c0 + _BLOCK) - c0
            bv = _lookup(table_b, b_codes[:, c0:c0 + w], b_buf if w == b_buf.shape[1] else None)
            np.matmul(av, bv, out=y[:, c0:c0 + w])
    else:  # terms of K: y = sum over blocks of A[:, ks] @ B[ks, :]
        a_buf, b_buf, part = np.empty((m, _BLOCK)), np.empty((_BLOCK, n)), None
        for k0 in range(0, k, _BLOCK):
            d = min(k, k0 + _BLOCK) - k0
            av = _lookup(table_a, a_codes[:, k0:k0 + d], a_buf if d == _BLOCK else None)
            bv = _lookup(table_b, b_codes[k0:k0 + d], b_buf[:d])
            if k0 == 0:
                np.matmul(av, bv, out=y)
                continue
            part = np.empty((m, n)) if part is None else part
            y += np.matmul(av, bv, out=part)
    return y


def dot_plan(m: int, n: int, k: int) -> tuple[str, int]:
    """How :func:`numpy_dot` computes an [M, K] x [K, N] GEMM, and the float64 elements it
    decodes into besides the output: ``one`` GEMM for small operands (M K + K N); else
    ``columns`` (A decoded whole, B in blocks of columns: M K + K _BLOCK) or ``terms`` (A and B
    in blocks of K, and an [M, N] partial product: (M + N) _BLOCK + M N), whichever is less."""
    if (m * k + k * n <= _ONE_GEMM_ELEMENTS) or min(m, n, k) == 0:
        return "one", m * k + k * n
    columns = m * k + k * min(n, _BLOCK)
    terms = (m + n) * _BLOCK + m * n if k > _BLOCK else columns + 1
    return ("terms", terms) if terms < columns else ("columns", columns)


def _abs_table(fmt: str) -> np.ndarray:
    """``|value|`` of every code of ``fmt``, NaN and inf codes mapped to 0."""
    t = np.abs(decode_table(get_format(fmt).name))
    return np.where(np.isfinite(t), t, 0.0)


def abs_dot_codes(a_codes: np.ndarray, fmt_a: str, b_codes: np.ndarray, fmt_b: str,
                  dot=None) -> np.ndarray:
    """:func:`abs_dot` of the codes' values, NaN and inf counted as 0. With one band per
    operand the GEMM is exact, so any ``dot`` (default :func:`numpy_dot`) gives the same bits;
    otherwise it is NumPy's float64 GEMM (``dot`` unused)."""
    k = np.shape(a_codes)[1]
    ta, tb = _abs_table(fmt_a), _abs_table(fmt_b)
    if not single_band(fmt_a, fmt_b, k):
        return abs_dot(_lookup(ta, a_codes), _lookup(tb, b_codes))
    return _round_up((dot or numpy_dot)(a_codes, b_codes, ta, tb), k)


# --- correct rounding ---------------------------------------------------------------------


def _round_fraction(v: Fraction, fmt: FloatFormat) -> float:
    """``v`` rounded to nearest-even in ``fmt`` with unbounded exponent above (no overflow)."""
    if v == 0:
        return 0.0
    neg = v < 0
    a = -v if neg else v
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    q = max(e, fmt.emin) - fmt.man_bits
    scaled = a / Fraction(2) ** q
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    r = math.ldexp(n, q)
    return -r if neg else r


def round_sum_exact(terms, p, c, fmt: FloatFormat | str) -> np.ndarray:
    """Correctly rounded ``p * sum(terms) + c`` per element, by exact rational arithmetic.

    ``terms`` are equal-shape float64 arrays, ``p`` and ``c`` float64 arrays broadcastable to
    them. Slow (Python fractions per element): meant for the few elements the fast path flags.
    """
    fmt = get_format(fmt)
    shape = np.broadcast_shapes(terms[0].shape, np.shape(p), np.shape(c))
    ts = [np.broadcast_to(t, shape).ravel() for t in terms]
    pp = np.broadcast_to(p, shape).ravel()
    cc = np.broadcast_to(c, shape).ravel()
    out = np.empty(len(pp))
    for i in range(len(pp)):
        exact = Fraction(pp[i]) * sum(Fraction(t[i]) for t in ts) + Fraction(cc[i])
        out[i] = _round_fraction(exact, fmt)
    return round_to_format(out, fmt).reshape(shape)  # values are exact: only overflow maps


_MANTISSA = np.uint64((1 << 52) - 1)


def _safe_rounding(t: np.ndarray, y: np.ndarray, d: np.ndarray, err: np.ndarray,
                   fmt: FloatFormat) -> np.ndarray:
    """Where the value ``y`` within ``err`` of the exact one, rounded to ``t`` (a value of
    ``fmt``, ``d = |y - t|``), rounds the exact value to ``t`` too: ``d + err`` is short of
    the rounding boundary on y's side, and ``err`` of a quarter of the spacing above |t| (the
    smallest half-gap on either side). The boundary toward zero of a power of two above the
    normal range's bottom is a quarter spacing away, not a half. An infinite ``t`` is never
    safe (``d`` is inf or NaN)."""
    at = np.abs(t)
    ulp = spacing_nonneg(at, fmt)  # inf or NaN where t is: never safe either way
    quarter = ulp / 4
    half_gap = ulp / 2
    pow2 = ((at.view(np.uint64) & _MANTISSA) == 0) & (at > fmt.min_normal)
    pow2 &= np.abs(y) < at  # toward zero from a power of two (rare: set by index)
    half_gap[pow2] = quarter[pow2]
    return (d + err < half_gap) & (err < quarter)


def scaled_mm_exact(
    a_codes: np.ndarray,
    fmt_a: str,
    b_codes: np.ndarray,
    fmt_b: str,
    scale_a,
    scale_b,
    bias,
    out_fmt: str,
    dot=None,
) -> np.ndarray:
    """Correctly rounded ``round_out(sa[m] * sb[n] * sum_k A[m,k] B[k,n] + bias[n])`` as float64.

    ``a_codes`` [M, K] and ``b_codes`` [K, N] are FP8 codes (B logical [K, N]; its memory layout
    is the kernel's business, not the reference's). ``scale_a`` has 1 or M float32 values,
    ``scale_b`` 1 or N, ``bias`` is None or N float64 values (already exact values of the bias
    dtype). NaN and inf in the inputs follow IEEE arithmetic (inf * 0 = NaN).

    ``dot`` (default :func:`numpy_dot`) computes the GEMM where one band per operand makes it
    exact in any order and no input is NaN or inf; elsewhere the band-split NumPy path runs.
    """
    out = get_format(out_fmt)
    a_codes, b_codes = np.asarray(a_codes), np.asarray(b_codes)
    (m, k), n = a_codes.shape, b_codes.shape[1]
    sa = _as_column(scale_a, m)
    sb = _as_column(scale_b, n).reshape(1, -1)
    c = np.zeros((1, 1)) if bias is None else np.asarray(bias, np.float64).reshape(1, -1)

    # Rows/columns touched by a non-finite input follow IEEE arithmetic; the rest is exact.
    bad_row = _nonfinite_lines(a_codes, fmt_a, axis=1)[:, None] | ~np.isfinite(sa)
    bad_col = _nonfinite_lines(b_codes, fmt_b, axis=0)[None, :] | ~np.isfinite(sb)
    bad_col = bad_col | ~np.isfinite(c)
    special = bad_row | bad_col
    if m and n and not special.any() and single_band(fmt_a, fmt_b, k):
        return _round_dot(a_codes, fmt_a, b_codes, fmt_b, sa, sb, c, out, dot or numpy_dot)
    a = decode(a_codes, fmt_a)
    b = decode(b_codes, fmt_b)
    if special.any():
        with np.errstate(invalid="ignore", over="ignore"):
            ieee = (a @ b) * sa * sb + c
        a, b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)
        sa, sb = np.where(np.isfinite(sa), sa, 1.0), np.where(np.isfinite(sb), sb, 1.0)
        c = np.where(np.isfinite(c), c, 0.0)

    terms = exact_dot_terms(a, fmt_a, b, fmt_b)
    y = _round_terms(terms, sa, sb, c, out, (m, n))
    if special.any():
        special = np.broadcast_to(special, (m, n))
        y = np.where(special, round_to_format(np.broadcast_to(ieee, (m, n)), out), y)
    return y


def _nonfinite_codes(codes: np.ndarray, fmt: str) -> np.ndarray:
    """Boolean mask of NaN/inf codes, computed on the 1-byte codes (cheaper than on floats)."""
    f = get_format(fmt)
    codes = np.asarray(codes)
    if f.special == "fnuz":
        return codes == 0x80
    low = codes & 0x7F
    if f.special == "fn":
        return low == 0x7F
    return low >= ((1 << f.exp_bits) - 1) << f.man_bits  # ieee: all-ones exponent


def _round_dot(a_codes, fmt_a, b_codes, fmt_b, sa, sb, c, out: FloatFormat, dot):
    """Correctly rounded ``sa sb (A @ B) + c`` from a dot's exact product (rounded in place)."""
    ta, tb = decode_table(get_format(fmt_a).name), decode_table(get_format(fmt_b).name)
    s = dot(a_codes, b_codes, ta, tb)
    return _round_terms([s], sa, sb, c, out, s.shape)


def _nonfinite_lines(codes: np.ndarray, fmt: str, axis: int) -> np.ndarray:
    """Which rows (``axis=1``) or columns (``axis=0``) of a 2-D code array hold a NaN/inf code,
    computed over blocks of rows: no temporary the size of the whole array (fresh pages of a
    large temporary cost more than the test itself)."""
    codes = np.asarray(codes)
    rows = max(1, (1 << 22) // max(codes.shape[1], 1))
    if axis == 1:
        out = np.zeros(codes.shape[0], bool)
        for r0 in range(0, codes.shape[0], rows):
            out[r0:r0 + rows] = _nonfinite_codes(codes[r0:r0 + rows], fmt).any(axis=1)
        return out
    out = np.zeros(codes.shape[1], bool)
    for r0 in range(0, codes.shape[0], rows):
        out |= _nonfinite_codes(codes[r0:r0 + rows], fmt).any(axis=0)
    return out


def _as_column(scale, n: int) -> np.ndarray:
    """float32 scale values as float64 of shape (1, 1) (one value) or (n, 1)."""
    v = np.asarray(scale, np.float32).astype(np.float64).reshape(-1)
    if v.size == 1:
        return v.reshape(1, 1)
    if v.size != n:
        raise ValueError(f"scale has {v.size} values; expected 1 or {n}")
    return v.reshape(-1, 1)


def _round_terms(terms, sa, sb, c, out: FloatFormat, shape) -> np.ndarray:
    """Correctly rounded ``sa * sb * sum(terms) + c``: the chunked bit-level fast path for one
    term (e4m3 pairs), the general bounded path otherwise and for the elements it flags."""
    if len(terms) == 1 and out.storage_bits > 8:
        return _round_single(terms[0], sa, sb, c, out, shape)
    return _round_general(terms, sa, sb, c, out, shape)


_CHUNK = 1 << 15  # output elements per block of the fast path (keeps its temporaries in cache)
# Outputs above which the fast path's chunks run on golden.parallel's threads; no default-grid
# case has more. 8192 x 6144 bf16 outputs on the 2-core VM: 0.41 s on one thread, 0.18-0.24 s
# on two.
_ROUND_BLOCK = 1 << 18


def _round_single(s: np.ndarray, sa, sb, c, out: FloatFormat, shape) -> np.ndarray:
    """Fast path for an exact float64 dot product ``s`` (overwritten with the result).

    ``y = fl(fl(s * sa) * sb) [+ c]`` is within ``3u (|s sa sb| + |y|)`` of the exact value.
    Rounding to ``out`` keeps the top ``man_bits`` fraction bits of y's float64 encoding; it can
    differ from the correct rounding only if y's dropped bits are within that error of the
    half-way pattern. Such elements, and those outside ``out``'s normal range (zero,
    subnormal, overflow, non-finite), go to the general path with the original ``s``.
    """
    m, n = shape
    if s.shape != shape or not s.flags.writeable:  # broadcast_to gives a read-only view
        s = np.broadcast_to(s, shape).copy()
    shift = 52 - out.man_bits
    half = np.uint64(1 << (shift - 1))
    low_mask = np.uint64((1 << shift) - 1)
    has_bias = bool(np.any(c != 0))
    rows = max(1, _CHUNK // max(n, 1))

    # One block of chunks per thread of golden.parallel (disjoint rows, each rounded the same
    # way whatever thread runs it), where there are more than _ROUND_BLOCK outputs; else one
    # block on this thread. The chunks of a block loop in one frame, each chunk's temporaries
    # freed as the next ones are made, so the heap keeps reusing their memory: blocks of 2**18
    # outputs, each freeing its last chunk's at once, took 0.50 s on one thread at 8192 x 6144
    # against 0.41 s in one block.
    chunks = -(-m // rows)
    pieces = min(chunks, workers()) if m * n > _ROUND_BLOCK else 1
    step = rows * max(1, -(-chunks // pieces))

    def block(b0: int) -> None:  # rows [b0, b0 + step) of s, in place
        for r0 in range(b0, min(m, b0 + step), rows):
            r1 = min(m, r0 + rows)
            blk = s[r0:r1]
            y = blk * (sa[r0:r1] if sa.shape[0] > 1 else sa)
            y *= sb
            if has_bias:
                mag = np.abs(y)
                y += c
            bits = y.view(np.uint64)
            dist = (bits & low_mask).astype(np.int64) - np.int64(half)
            np.abs(dist, out=dist)
            ay = np.abs(y)
            if has_bias:
                # error in float64 ulps of y: 3u(|y1| + |y|) / (2**-52 |y|) <= 2 (|y1| / |y| + 1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    thr = 4.0 * (mag / ay) + 8.0
                slow = dist <= thr
            else:
                slow = dist <= 8
            slow |= ~((ay >= out.min_normal) & (ay <= out.max))
            res = round_bits(bits, out.man_bits).view(np.float64)
            if slow.any():
                idx = np.nonzero(slow)
                rr = idx[0] + r0
                sa_sel = sa[rr, 0] if sa.shape[0] > 1 else sa.reshape(-1)
                sb_sel = sb[0, idx[1]] if sb.shape[1] > 1 else sb.reshape(-1)
                c_sel = c[0, idx[1]] if c.shape[1] > 1 else c.reshape(-1)
                res[idx] = _round_general([blk[idx]], sa_sel, sb_sel, c_sel, out, (len(rr),))
            blk[...] = res

    map_ordered(block, range(0, m, step))
    return s


def _round_general(terms, sa, sb, c, out: FloatFormat, shape) -> np.ndarray:
    """Fast float64 evaluation with a rigorous error bound; exact fallback where it matters."""
    with np.errstate(over="ignore", invalid="ignore"):
        # any summation order: the bound below covers it, and the result is the correctly
        # rounded value wherever the bound says safe
        s, absum = terms[0], np.abs(terms[0])
        if len(terms) > 1:
            s = s.copy()
            for term in terms[1:]:
                s += term
                absum += np.abs(term)
        p = sa * sb  # exact: two float32 values
        y1 = s * sa * sb
        y = y1 + c
        # |y - exact| <= (n + 4) u (|p| sum|T_i| + |y|): n-1 for the term sum, 2 for the scale
        # products, 1 for the bias add, plus slack for second-order terms.
        err = (len(terms) + 4) * _U * (np.abs(p) * absum + np.abs(y))
        t_ext = round_unbounded(y, out)
        d = np.abs(y - t_ext)
        safe = _safe_rounding(t_ext, y, d, err, out)
        safe &= np.isfinite(y)
    t = limit_range(t_ext, out)  # t_ext is at out's precision: only overflow maps
    t = np.broadcast_to(t, shape).copy()
    if not safe.all():
        idx = np.nonzero(~np.broadcast_to(safe, shape))
        sel = [np.broadcast_to(tt, shape)[idx] for tt in terms]
        t[idx] = round_sum_exact(
            sel,
            np.broadcast_to(p, shape)[idx],
            np.broadcast_to(c, shape)[idx],
            out,
        )
    return t


# --- grouped scaling (block-scaled and weight-only GEMMs) -----------------------------------

_SPLITTER = 134217729.0  # 2**27 + 1 (Veltkamp split of a float64 into two 26-bit halves)


def _two_prod(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, e)`` with ``p + e == x * y`` exactly (Dekker; finite values, no overflow)."""
    p = x * y

    def split(v):
        t = _SPLITTER * v
        hi = t - (t - v)
        return hi, v - hi

    xh, xl = split(x)
    yh, yl = split(y)
    e = ((xh * yh - p) + xh * yl + xl * yh) + xl * yl
    return p, e


def grouped_mm_exact(a, fmt_a: str, b, fmt_b: str, scale_a, scale_b, group_k: int, bias,
                     out_fmt: str) -> np.ndarray:
    """Correctly rounded ``round_out(sum_g sa[m,g] sb[g,n] sum_{k in g} A[m,k] B[k,n] + bias)``.

    The one reference for GEMMs whose scales vary along K: block-scaled FP8 (1 x ``group_k``
    activation groups, ``group_k`` x bn weight blocks, ``scale_b`` expanded along N) and
    weight-only FP8 (``a`` holds the unquantized bf16/fp16 activations, ``fmt_a`` names their
    format, ``scale_a`` is 1). ``a`` [M, K] and ``b`` [K, N] are float64 values of their
    formats; ``scale_a`` is float32 broadcastable to [M, G], ``scale_b`` to [G, N], with
    ``G = ceil(K / group_k)``; ``bias`` None or float64 broadcastable to [M, N].

    Each group's dot product is exact (:func:`exact_dot_terms`), its scale ``sa sb`` is exact
    in float64 (two float32 values), and the product of the two is split exactly into two
    float64 terms (Dekker), so the output is rounded once from the exact value. Non-finite
    inputs follow IEEE arithmetic in the rows and columns they touch.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"a is [M,K]={a.shape} but b is {b.shape}: expected [K,N] with K={k}")
    n = b.shape[1]
    gk = int(group_k)
    if gk <= 0:
        raise ValueError(f"group_k={group_k!r} must be a positive int")
    g = -(-k // gk)
    out = get_format(out_fmt)
    sa = np.broadcast_to(np.asarray(scale_a, np.float32).astype(np.float64), (m, g))
    sb = np.broadcast_to(np.asarray(scale_b, np.float32).astype(np.float64), (g, n))
    c = np.zeros((1, 1)) if bias is None else np.asarray(bias, np.float64)
    c = c.reshape(1, -1) if c.ndim < 2 else c  # [N] -> [1,N]; [M,1] and [M,N] stay
    np.broadcast_shapes(c.shape, (m, n))  # a bias that does not broadcast fails here

    special = (~np.isfinite(a).all(axis=1) | ~np.isfinite(sa).all(axis=1))[:, None]
    special = special | (~np.isfinite(b).all(axis=0) | ~np.isfinite(sb).all(axis=0))[None, :]
    special = np.broadcast_to(special | ~np.isfinite(c), (m, n))
    if special.any():
        with np.errstate(invalid="ignore", over="ignore"):
            ieee = sum(((a[:, j * gk:(j + 1) * gk] @ b[j * gk:(j + 1) * gk])
                        * sa[:, j:j + 1] * sb[j:j + 1]) for j in range(g)) + c
        a = np.where(np.isfinite(a), a, 0.0)
        b = np.where(np.isfinite(b), b, 0.0)
        sa, sb = np.where(np.isfinite(sa), sa, 1.0), np.where(np.isfinite(sb), sb, 1.0)
        c = np.where(np.isfinite(c), c, 0.0)
    if m == 0 or n == 0:
        return np.zeros((m, n))
    if g == 1 and c.shape[0] == 1:  # the plain path (its fast rounding takes a [1,N] bias)
        y = _round_terms(exact_dot_terms(a, fmt_a, b, fmt_b), sa, sb, c, out, (m, n))
    elif g == 1:
        y = _round_general(exact_dot_terms(a, fmt_a, b, fmt_b), sa, sb, c, out, (m, n))
    else:
        terms = []
        for j in range(g):
            s = sa[:, j:j + 1] * sb[j:j + 1, :]  # exact: two float32 values
            for t in exact_dot_terms(a[:, j * gk:(j + 1) * gk], fmt_a,
                                     b[j * gk:(j + 1) * gk], fmt_b):
                hi, lo = _two_prod(t, s)
                terms += [hi, lo]
        one = np.ones((1, 1))
        y = _round_general(terms, one, one, c, out, (m, n))
    if special.any():
        y = np.where(special, round_to_format(ieee, out), y)
    return y
