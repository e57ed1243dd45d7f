"""``golden.matmul.grouped_mm_exact``: block-scaled and weight-only references against Python
fractions, and against ``scaled_mm_exact`` where the two must agree (one group)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.codecs import decode, encode, round_to_format
from golden.matmul import grouped_mm_exact, scaled_mm_exact

OUT = {"bf16": (7, -126), "fp16": (10, -14), "fp32": (23, -126)}


def rne(v: Fraction, out: str) -> float:
    """``v`` rounded to nearest-even in ``out``, exponent unbounded above."""
    man, emin = OUT[out]
    if v == 0:
        return 0.0
    a = abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    q = Fraction(2) ** (max(e, emin) - man)
    n, rem = divmod(a, q)
    n = int(n)
    if rem * 2 > q or (rem * 2 == q and n % 2):
        n += 1
    r = float(n * q)
    return -r if v < 0 else r


def fraction_reference(a, b, sa, sb, gk, bias, out):
    m, k = a.shape
    n = b.shape[1]
    sa = np.broadcast_to(sa, (m, -(-k // gk)))
    sb = np.broadcast_to(sb, (-(-k // gk), n))
    y = np.empty((m, n))
    for i in range(m):
        for j in range(n):
            tot = Fraction(0)
            for g in range(sa.shape[1]):
                part = sum(Fraction(float(a[i, kk])) * Fraction(float(b[kk, j]))
                           for kk in range(g * gk, min(k, (g + 1) * gk)))
                tot += Fraction(float(sa[i, g])) * Fraction(float(sb[g, j])) * part
            if bias is not None:
                tot += Fraction(float(np.broadcast_to(bias, (m, n))[i, j]))
            y[i, j] = rne(tot, out)
    return round_to_format(y, out)  # values are exact; only overflow maps (to inf)


def fp8_values(rng, shape, fmt):
    codes = rng.integers(0, 256, shape).astype(np.uint8)
    vals = decode(codes, fmt)
    return np.where(np.isfinite(vals), vals, 0.0)


def scales(rng, shape):
    return np.ldexp(1 + rng.random(shape), rng.integers(-8, 3, shape)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 4), n=st.integers(1, 4),
       groups=st.integers(1, 4), gk=st.sampled_from([1, 3, 8]),
       out=st.sampled_from(list(OUT)), with_bias=st.booleans())
def test_block_scaled_matches_fractions(seed, m, n, groups, gk, out, with_bias):
    """Per-group scales on both sides, any group size, ragged last group."""
    rng = np.random.default_rng(seed)
    k = groups * gk - (1 if gk > 1 and groups > 1 else 0)
    a, b = fp8_values(rng, (m, k), "e4m3fn"), fp8_values(rng, (k, n), "e4m3fn")
    g = -(-k // gk)
    sa, sb = scales(rng, (m, g)), scales(rng, (g, n))
    bias = round_to_format(rng.normal(size=n) * 100, "bf16") if with_bias else None
    got = grouped_mm_exact(a, "e4m3fn", b, "e4m3fn", sa, sb, gk, bias, out)
    assert np.array_equal(got, fraction_reference(a, b, sa, sb, gk, bias, out))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), xfmt=st.sampled_from(["bf16", "fp16"]),
       wfmt=st.sampled_from(["e4m3fn", "e5m2"]), per_channel=st.booleans())
def test_weight_only_matches_fractions(seed, xfmt, wfmt, per_channel):
    """Unquantized bf16/fp16 activations times FP8 weights (W8A16), output in x's dtype."""
    rng = np.random.default_rng(seed)
    m, n, k = 3, 4, 37
    x = round_to_format(rng.normal(size=(m, k)) * np.ldexp(1.0, rng.integers(-20, 20, (m, k))),
                        xfmt)
    x = np.where(np.isfinite(x), x, 0.0)
    b = fp8_values(rng, (k, n), wfmt)
    sb = scales(rng, (1, n) if per_channel else (1, 1))
    got = grouped_mm_exact(x, xfmt, b, wfmt, np.ones((1, 1), np.float32), sb, k, None, xfmt)
    assert np.array_equal(got, fraction_reference(x, b, np.ones((1, 1)), sb, k, None, xfmt))


@pytest.mark.parametrize("out", list(OUT))
def test_one_group_equals_scaled_mm_exact(out):
    rng = np.random.default_rng(7)
    m, n, k = 9, 12, 64
    a_codes = encode(rng.normal(size=(m, k)) * 8, "e4m3fn", "saturate")
    b_codes = encode(rng.normal(size=(k, n)), "e4m3fn", "saturate")
    sa, sb = scales(rng, (m, 1)), scales(rng, (1, n))
    bias = round_to_format(rng.normal(size=n), "bf16")
    want = scaled_mm_exact(a_codes, "e4m3fn", b_codes, "e4m3fn", sa, sb, bias, out)
    got = grouped_mm_exact(decode(a_codes, "e4m3fn"), "e4m3fn", decode(b_codes, "e4m3fn"),
                           "e4m3fn", sa, sb, k, bias, out)
    assert np.array_equal(got, want)
    # The same scales split into groups of 16 (equal per group) give the same answer.
    got4 = grouped_mm_exact(decode(a_codes, "e4m3fn"), "e4m3fn", decode(b_codes, "e4m3fn"),
                            "e4m3fn", np.repeat(sa, 4, 1), np.repeat(sb, 4, 0), 16, bias, out)
    assert np.array_equal(got4, want)


@pytest.mark.parametrize("bias_shape", [(5, 6), (5, 1), (6,), (1, 6)])
@pytest.mark.parametrize("gk", [64, 16])
def test_bias_of_every_broadcast_shape(bias_shape, gk):
    """[M,N], [M,1], [N] and [1,N] biases, one group and several (integer data: exact)."""
    rng = np.random.default_rng(3)
    a = rng.integers(-8, 9, (5, 64)).astype(np.float64)
    b = rng.integers(-8, 9, (64, 6)).astype(np.float64)
    bias = rng.integers(-3000, 3000, bias_shape).astype(np.float64)
    g = 64 // gk
    got = grouped_mm_exact(a, "e4m3fn", b, "e4m3fn", np.ones((1, g)), np.ones((g, 6)), gk,
                           bias, "bf16")
    assert np.array_equal(got, round_to_format(a @ b + bias, "bf16"))


def test_nan_in_activation_poisons_its_row():
    x = np.ones((3, 8))
    x[1, 2] = np.nan
    b = np.ones((8, 4))
    y = grouped_mm_exact(x, "bf16", b, "e4m3fn", np.ones((1, 1)), np.ones((1, 4)), 8, None,
                         "bf16")
    assert np.isnan(y[1]).all() and (y[[0, 2]] == 8).all()


def test_bad_shapes_name_the_operands():
    with pytest.raises(ValueError, match=r"a is \[M,K\]"):
        grouped_mm_exact(np.ones((2, 3)), "e4m3fn", np.ones((4, 2)), "e4m3fn", 1, 1, 3, None,
                         "bf16")
    with pytest.raises(ValueError, match="group_k"):
        grouped_mm_exact(np.ones((2, 3)), "e4m3fn", np.ones((3, 2)), "e4m3fn", 1, 1, 0, None,
                         "bf16")
