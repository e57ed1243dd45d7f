"""Conformance of ``golden.codecs`` against ml_dtypes, torch and an exact Fraction reference.

Every difference between our codes and a library's is either NaN-vs-NaN (payload and sign of a
NaN are not compared) or is derived from one of the measured conventions spelled out in
``NATIVE_OVERFLOW`` / ``LIBRARY_FLOAT64_DOUBLE_ROUNDS`` below; anything else fails.

Measured on the development machine with torch 2.13.0+cpu and ml_dtypes 0.6.0:

* torch's CPU float32 -> float8_e4m3fn cast SATURATES: 500 -> 448 (0x7E), +-inf -> +-448,
  NaN -> NaN (sign kept: -NaN -> 0xFF). It equals our ``overflow="saturate"``.
* torch's e5m2, e4m3fnuz, e5m2fnuz casts do not saturate (our ``"ieee"``): e5m2 overflow -> inf
  (0x7C/0xFC), fnuz overflow and +-inf -> the NaN code 0x80. torch writes NaN as 0x7F/0xFF in
  e5m2 (we write 0x7E).
* ml_dtypes 0.6 does not saturate in any FP8 format (our ``"ieee"``); e4m3fn overflow and
  +-inf -> NaN 0x7F/0xFF (sign kept; we always write 0x7F).
* torch's bf16/fp16/fp32 casts from float32 are IEEE (overflow -> inf).
* From float64, torch (e4m3fn, bf16, fp16) and ml_dtypes (e4m3fn, bf16) round twice, through
  float32; we round once.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import cache
from typing import NamedTuple

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.codecs import (
    OVERFLOW_MODES,
    code_dtype,
    decode,
    encode,
    encode_table,
    round_to_format,
    round_unbounded,
    spacing,
)
from golden.formats import FORMATS, FP8_FORMATS, OUT_FORMATS, get_format

# NumPy-side dtype of each format: ml_dtypes', or numpy's own for fp16/fp32.
ML_DTYPES = {
    "e4m3fn": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
    "fp32": np.float32,
}
TORCH_DTYPES = {
    "e4m3fn": torch.float8_e4m3fn,
    "e5m2": torch.float8_e5m2,
    "e4m3fnuz": torch.float8_e4m3fnuz,
    "e5m2fnuz": torch.float8_e5m2fnuz,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}
# Same-width integer dtypes (torch, numpy) for reinterpreting storage as codes and back.
TORCH_INT = {
    8: (torch.uint8, np.uint8),
    16: (torch.int16, np.int16),
    32: (torch.int32, np.int32),
}

# The NaN code we write (positive where the format has a NaN sign).
OUR_NAN_CODE = {"e4m3fn": 0x7F, "e5m2": 0x7E, "e4m3fnuz": 0x80, "e5m2fnuz": 0x80}


class Spec(NamedTuple):
    """An independent, literal description of a format for the exact reference."""

    man_bits: int
    emin: int
    max: float
    has_inf: bool
    has_neg_zero: bool

    @property
    def top_ulp(self) -> float:
        """Spacing of the values in the top finite binade."""
        return 2.0 ** (math.frexp(self.max)[1] - 1 - self.man_bits)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return 2.0 ** (self.emin - self.man_bits)


SPECS = {
    "e4m3fn": Spec(3, -6, 448.0, False, True),
    "e5m2": Spec(2, -14, 57344.0, True, True),
    "e4m3fnuz": Spec(3, -7, 240.0, False, False),
    "e5m2fnuz": Spec(2, -15, 57344.0, False, False),
    "bf16": Spec(7, -126, float.fromhex("0x1.fep127"), True, True),
    "fp16": Spec(10, -14, 65504.0, True, True),
    "fp32": Spec(23, -126, float.fromhex("0x1.fffffep127"), True, True),
}

# ---------------------------------------------------------------------------------------------
# Measured conventions. A library's float32 -> fmt cast behaves like one of our overflow modes;
# the expectation for the other mode is derived from it (see ``expected_codes``).
# ---------------------------------------------------------------------------------------------
NATIVE_OVERFLOW = {
    "ml_dtypes": {f: "ieee" for f in FP8_FORMATS},  # 0.6: e4m3fn 500 -> NaN 0x7F
    "torch": {
        "e4m3fn": "saturate",  # 2.13 CPU: 500 -> 448, +-inf -> +-448, NaN -> NaN
        "e5m2": "ieee",  # 1e6 -> inf 0x7C
        "e4m3fnuz": "ieee",  # 500, +-inf -> NaN 0x80
        "e5m2fnuz": "ieee",  # 1e6, +-inf -> NaN 0x80
        "bf16": "ieee",
        "fp16": "ieee",  # 65520 -> inf
        "fp32": "ieee",
    },
}

# Casts from float64 that round through float32 first (measured: all of these give 1.0 on the
# double-rounding cases in ``DOUBLE_ROUNDING_CASES``; numpy's float64 -> float16 rounds once).
LIBRARY_FLOAT64_DOUBLE_ROUNDS = {
    ("torch", "e4m3fn"),
    ("torch", "bf16"),
    ("torch", "fp16"),
    ("ml_dtypes", "e4m3fn"),
    ("ml_dtypes", "bf16"),
}

# (x, format, the correctly rounded result); rounding x to float32 first lands on a tie that
# then rounds to even, 1.0.
DOUBLE_ROUNDING_CASES = [
    (1 + 2**-4 + 2**-40, "e4m3fn", 1.125),
    (1 + 2**-8 + 2**-30, "bf16", 1 + 2**-7),
    (1 + 2**-11 + 2**-40, "fp16", 1 + 2**-10),
]

RNG_SEED = 0x5EED_F8
# Edge values added to every output-format comparison (fp16 max and threshold, near float32 max,
# float32 subnormals).
OUT_SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.996, 65520, 3e38, 3.4e38, 1e-45]

# NumPy warns when it casts or takes frexp of NaNs (signalling ones especially); that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def library_cast(lib: str, fmt: str, x: np.ndarray) -> np.ndarray:
    """Codes of the library's native cast of ``x`` (float32 or float64) to ``fmt``."""
    bits = get_format(fmt).storage_bits
    if lib == "ml_dtypes":
        return x.astype(ML_DTYPES[fmt]).view(np.dtype(f"uint{bits}"))
    t = torch.from_numpy(np.array(x)).to(TORCH_DTYPES[fmt])  # a writable copy
    return t.view(TORCH_INT[bits][0]).numpy().view(f"uint{bits}")


def library_decode(lib: str, fmt: str, codes: np.ndarray) -> np.ndarray:
    """float64 values of unsigned ``codes`` as the library reads them."""
    if lib == "ml_dtypes":
        return codes.view(ML_DTYPES[fmt]).astype(np.float64)
    ints = torch.from_numpy(codes.view(TORCH_INT[codes.dtype.itemsize * 8][1]))
    return ints.view(TORCH_DTYPES[fmt]).to(torch.float64).numpy()


def is_nan_code(fmt: str, codes: np.ndarray) -> np.ndarray:
    """Where ``codes`` are NaN, judged by ml_dtypes/numpy (independently of golden)."""
    return np.isnan(codes.view(ML_DTYPES[fmt]).astype(np.float32))


def rounds_past_max(x: np.ndarray, fmt: str) -> np.ndarray:
    """Where RNE of ``x`` exceeds max: past the threshold, or on it with an odd max significand."""
    spec = SPECS[fmt]
    a = np.abs(x.astype(np.float64))
    threshold = spec.max + spec.top_ulp / 2
    max_is_odd = (spec.max / spec.top_ulp) % 2 == 1
    with np.errstate(invalid="ignore"):
        return (a > threshold) | ((a == threshold) & max_is_odd)


def expected_codes(lib: str, fmt: str, mode: str, x32: np.ndarray) -> np.ndarray:
    """What ``encode(x32, fmt, mode)`` must equal, built from the library's cast and conventions."""
    native = NATIVE_OVERFLOW[lib][fmt]
    if native == mode:
        return library_cast(lib, fmt, x32)
    spec = SPECS[fmt]
    if mode == "saturate":  # an IEEE library: clamp first (+-inf -> +-max, NaN passes through)
        return library_cast(lib, fmt, np.clip(x32, np.float32(-spec.max), np.float32(spec.max)))
    # mode == "ieee" from a saturating library: overflowing inputs must give NaN instead.
    assert not spec.has_inf, f"no convention for a saturating {lib} cast to {fmt}, which has inf"
    return library_cast(lib, fmt, np.where(rounds_past_max(x32, fmt), np.float32(np.nan), x32))


def _show(v) -> str:
    """One value for a mismatch report: codes in hex, floats with their exact hex spelling."""
    if isinstance(v, (np.integer, int)):
        return f"{int(v):#x}"
    return f"{float(v)!r} ({float(v).hex()})"


def mismatch_message(what: str, x, ours, theirs, bad: np.ndarray, limit: int = 8) -> str:
    """'N of M differ' and the first few (input, ours, theirs)."""
    idx = np.flatnonzero(bad)
    lines = [f"{what}: {idx.size} of {bad.size} differ; first {min(limit, idx.size)}:"]
    lines += [
        f"  x={_show(x[i])}  ours={_show(ours[i])}  theirs={_show(theirs[i])}" for i in idx[:limit]
    ]
    return "\n".join(lines)


def assert_codes_equal(what: str, fmt: str, x, ours: np.ndarray, theirs: np.ndarray) -> None:
    """Codes equal bitwise, except that any NaN code matches any NaN code."""
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
    both_nan = is_nan_code(fmt, ours) & is_nan_code(fmt, theirs)
    bad = (ours != theirs) & ~both_nan
    if bad.any():
        raise AssertionError(mismatch_message(what, x, ours, theirs, bad))


def assert_values_equal(what: str, x, ours: np.ndarray, theirs: np.ndarray) -> None:
    """float64 values equal bitwise (so -0 != +0), NaN matching NaN whatever the payload."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    both_nan = np.isnan(ours) & np.isnan(theirs)
    bad = (ours.view(np.uint64) != theirs.view(np.uint64)) & ~both_nan
    if bad.any():
        raise AssertionError(mismatch_message(what, np.asarray(x), ours, theirs, bad))


@cache
def float32_inputs(source: str) -> np.ndarray:
    """Read-only float32 test inputs: every fp16 or bf16 pattern widened, or random bit patterns."""
    if source == "fp16-patterns":
        x = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    elif source == "bf16-patterns":
        x = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
    elif source == "random-f32":
        rng = np.random.default_rng(RNG_SEED)
        x = rng.integers(0, 1 << 32, size=1 << 17, dtype=np.uint32).view(np.float32)
    else:
        raise ValueError(source)
    x.flags.writeable = False
    return x


def fp8_finite_values(fmt: str) -> np.ndarray:
    """Sorted distinct non-negative finite values of an FP8 format, read through ml_dtypes."""
    v = np.arange(256, dtype=np.uint8).view(ML_DTYPES[fmt]).astype(np.float64)
    return np.unique(v[np.isfinite(v) & (v >= 0)])


def midpoint_neighbourhood(fmt: str, ulps: int = 4) -> np.ndarray:
    """float32 values within ``ulps`` ulps of each rounding midpoint and overflow threshold."""
    v = fp8_finite_values(fmt)
    spec = SPECS[fmt]
    centres = np.concatenate([(v[:-1] + v[1:]) / 2, [spec.max + spec.top_ulp / 2]])
    c32 = centres.astype(np.float32)
    assert np.array_equal(c32.astype(np.float64), centres), "midpoints must be float32-exact"
    bits = c32.view(np.uint32)[:, None].astype(np.int64) + np.arange(-ulps, ulps + 1)
    pos = bits.astype(np.uint32).view(np.float32).ravel()
    return np.concatenate([pos, -pos])


def exact_round(x: float, spec: Spec, overflow: str) -> float:
    """x rounded exactly (Fractions): nearest, ties to even, with subnormals; overflow per mode."""
    if math.isnan(x):
        return math.nan
    negative = math.copysign(1.0, x) < 0
    mag = None  # None: overflow
    if not math.isinf(x):
        a = Fraction(abs(x))
        if a == 0:
            mag = a
        else:
            e = a.numerator.bit_length() - a.denominator.bit_length()
            if Fraction(2) ** e > a:
                e -= 1  # now 2**e <= a < 2**(e+1)
            quantum = Fraction(2) ** (max(e, spec.emin) - spec.man_bits)
            mag = round(a / quantum) * quantum  # Fraction.__round__ rounds half to even
            if mag > Fraction(spec.max):
                mag = None
    if mag is None:
        if overflow == "saturate":
            r = spec.max
        elif spec.has_inf:
            r = math.inf
        else:
            return math.nan
    else:
        r = float(mag)
    if r == 0 and not spec.has_neg_zero:
        return 0.0
    return -r if negative else r


def float64_probes(fmt: str, n: int = 1500) -> np.ndarray:
    """Random float64 values aimed at ``fmt``: exact midpoints, midpoints nudged by tiny amounts
    (double-rounding traps), random values across the format's range and raw random bits."""
    spec = SPECS[fmt]
    rng = np.random.default_rng([RNG_SEED, list(FORMATS).index(fmt)])
    p = spec.man_bits + 1
    top_exp = math.frexp(spec.max)[1]
    # odd (p+1)-bit integers scaled into [2**E, 2**(E+1)): midpoints of the normal grid
    odd = rng.integers(1 << p, 1 << (p + 1), size=n) | 1
    exps = rng.integers(spec.emin - spec.man_bits - 3, top_exp + 2, size=n)
    mids = np.ldexp(odd.astype(np.float64), exps - p)
    nudge = np.ldexp(rng.choice([-1.0, 1.0], size=n), -rng.integers(p + 2, 53, size=n))
    nudged = mids * (1 + nudge)
    ranged = np.ldexp(rng.uniform(0.5, 1.0, size=n), exps)
    raw = rng.integers(0, 1 << 64, size=n // 4, dtype=np.uint64).view(np.float64)
    specials = np.array(
        [
            0.0,
            np.inf,
            np.nan,
            spec.max,
            spec.min_subnormal,
            spec.min_subnormal / 2,
            spec.max + spec.top_ulp / 2,
            5e-324,
        ]
    )
    x = np.concatenate([mids, nudged, ranged, specials])
    x = x * rng.choice([-1.0, 1.0], size=x.size)
    return np.concatenate([x, raw])


# ---------------------------------------------------------------------------------------------
# 0. The format table itself
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_format_table_matches_literal_specs_and_finfo(fmt):
    f, spec = get_format(fmt), SPECS[fmt]
    assert (f.man_bits, f.emin, f.max, f.has_inf, f.has_neg_zero) == tuple(spec)
    assert f.min_subnormal == spec.min_subnormal
    ti = torch.finfo(TORCH_DTYPES[fmt])
    assert (f.max, f.min_normal) == (ti.max, ti.smallest_normal)
    if fmt != "fp16":
        mi = ml_dtypes.finfo(ML_DTYPES[fmt])
        assert (f.max, f.min_normal, f.min_subnormal) == (
            float(mi.max),
            float(mi.tiny),
            float(mi.smallest_subnormal),
        )


# ---------------------------------------------------------------------------------------------
# 1. decode of every FP8 code
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib", ["ml_dtypes", "torch"])
@pytest.mark.parametrize("fmt", FP8_FORMATS + ("bf16", "fp16"))
def test_decode_every_code_matches_library(fmt, lib):
    bits = get_format(fmt).storage_bits
    codes = np.arange(1 << bits, dtype=np.dtype(f"uint{bits}"))
    theirs = library_decode(lib, fmt, codes)
    ours = decode(codes, fmt)
    assert ours.dtype == np.float64
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), (
        f"NaN codes differ: ours {np.flatnonzero(np.isnan(ours))[:8]}, "
        f"theirs {np.flatnonzero(np.isnan(theirs))[:8]}"
    )
    assert_values_equal(f"decode {fmt} vs {lib}", codes, ours, theirs)


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_decode_negative_zero_only_where_format_has_it(fmt):
    vals = decode(np.arange(256, dtype=np.uint8), fmt)
    neg_zero = np.flatnonzero((vals == 0) & np.signbit(vals))
    expected = [0x80] if SPECS[fmt].has_neg_zero else []
    assert neg_zero.tolist() == expected
    assert np.flatnonzero(vals == 0).tolist() == [0] + expected


# ---------------------------------------------------------------------------------------------
# 2. encode of every fp16 / bf16 pattern (and random float32 bits) against the libraries
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["fp16-patterns", "bf16-patterns", "random-f32"])
@pytest.mark.parametrize("lib", ["ml_dtypes", "torch"])
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_encode_fp8_from_float32_matches_library(fmt, mode, lib, source):
    x32 = float32_inputs(source)
    ours = encode(x32.astype(np.float64), fmt, overflow=mode)
    theirs = expected_codes(lib, fmt, mode, x32)
    assert_codes_equal(f"{fmt} {mode} vs {lib} ({source})", fmt, x32, ours, theirs)


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_encode_fp8_nan_code_is_ours(fmt, mode):
    payloads = np.array([0x7FF0000000000001, 0xFFF8000000000123], np.uint64).view(np.float64)
    x = np.concatenate([[np.nan, -np.nan], payloads])
    assert encode(x, fmt, overflow=mode).tolist() == [OUR_NAN_CODE[fmt]] * x.size


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_measured_overflow_conventions(fmt):
    """Pin the conventions above on a few values, so a library change is reported plainly."""
    spec = SPECS[fmt]
    x = np.array([2 * spec.max, np.inf, -np.inf], np.float32)
    saturated = library_cast("ml_dtypes", fmt, np.clip(x, -spec.max, spec.max))
    for lib in ("ml_dtypes", "torch"):
        got = library_cast(lib, fmt, x)
        if NATIVE_OVERFLOW[lib][fmt] == "saturate":
            assert got.tolist() == saturated.tolist(), f"{lib} {fmt} no longer saturates"
        else:
            f = get_format(fmt)
            want_nan = not f.has_inf
            assert is_nan_code(fmt, got).tolist() == [want_nan] * 3, f"{lib} {fmt}: {got}"
            if f.has_inf:
                assert np.isinf(got.view(ML_DTYPES[fmt]).astype(np.float32)).all()


# ---------------------------------------------------------------------------------------------
# 3. float32 inputs near every rounding midpoint and overflow threshold
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib", ["ml_dtypes", "torch"])
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_encode_fp8_near_midpoints_matches_library(fmt, mode, lib):
    x32 = midpoint_neighbourhood(fmt, ulps=4)
    ours = encode(x32.astype(np.float64), fmt, overflow=mode)
    theirs = expected_codes(lib, fmt, mode, x32)
    assert_codes_equal(f"{fmt} {mode} vs {lib} near midpoints", fmt, x32, ours, theirs)


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_encode_fp8_near_midpoints_matches_exact_reference(fmt, mode):
    x = midpoint_neighbourhood(fmt, ulps=4).astype(np.float64)
    ref = np.array([exact_round(v, SPECS[fmt], mode) for v in x])
    assert_values_equal(f"{fmt} {mode} round_to_format", x, round_to_format(x, fmt, mode), ref)
    assert_values_equal(f"{fmt} {mode} decode(encode)", x, decode(encode(x, fmt, mode), fmt), ref)


# ---------------------------------------------------------------------------------------------
# 4. float64 inputs: single rounding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize(("x", "fmt", "want"), DOUBLE_ROUNDING_CASES, ids=lambda v: str(v))
def test_float64_rounds_once(x, fmt, want, mode):
    spec = SPECS[fmt]
    tie = 1 + 2.0 ** -(spec.man_bits + 1)  # halfway between 1 and the next value of fmt
    assert float(np.float32(x)) == tie, "float32(x) must land exactly on a tie"
    assert exact_round(x, spec, mode) == want
    assert round_to_format(np.array([x]), fmt, mode).tolist() == [want]
    assert decode(encode(np.array([x]), fmt, mode), fmt).tolist() == [want]
    assert decode(encode(np.array([-x]), fmt, mode), fmt).tolist() == [-want]


@pytest.mark.parametrize(("lib", "fmt"), sorted(LIBRARY_FLOAT64_DOUBLE_ROUNDS))
def test_measured_library_float64_double_rounding(lib, fmt):
    """Pin the measured convention: these float64 casts round through float32."""
    x, _, want = next(c for c in DOUBLE_ROUNDING_CASES if c[1] == fmt)
    theirs = library_cast(lib, fmt, np.array([x, -x]))
    ours = encode(np.array([x, -x]), fmt)
    assert decode(theirs, fmt).tolist() == [1.0, -1.0]
    assert decode(ours, fmt).tolist() == [want, -want]


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_float64_matches_exact_reference(fmt, mode):
    x = float64_probes(fmt)
    ref = np.array([exact_round(float(v), SPECS[fmt], mode) for v in x])
    assert_values_equal(f"{fmt} {mode} round_to_format", x, round_to_format(x, fmt, mode), ref)
    assert_values_equal(f"{fmt} {mode} decode(encode)", x, decode(encode(x, fmt, mode), fmt), ref)


_float64s = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.builds(math.ldexp, st.floats(-1.0, 1.0), st.integers(-160, 132)),
)


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(xs=st.lists(_float64s, min_size=1, max_size=40))
def test_round_float64_matches_exact_reference_hypothesis(fmt, mode, xs):
    x = np.array(xs, dtype=np.float64)
    ref = np.array([exact_round(v, SPECS[fmt], mode) for v in xs])
    assert_values_equal(f"{fmt} {mode}", x, round_to_format(x, fmt, mode), ref)
    assert_values_equal(f"{fmt} {mode} decode(encode)", x, decode(encode(x, fmt, mode), fmt), ref)


# ---------------------------------------------------------------------------------------------
# 5. Output formats
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["fp16-patterns", "bf16-patterns", "random-f32"])
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", OUT_FORMATS)
def test_encode_out_format_from_float32_matches_torch(fmt, mode, source):
    x32 = np.concatenate([float32_inputs(source), np.array(OUT_SPECIALS, np.float32)])
    ours = encode(x32.astype(np.float64), fmt, overflow=mode)
    theirs = expected_codes("torch", fmt, mode, x32)
    assert_codes_equal(f"{fmt} {mode} vs torch ({source})", fmt, x32, ours, theirs)


@pytest.mark.parametrize(
    ("x", "ieee", "saturate"),
    [
        (65504.0, 0x7BFF, 0x7BFF),
        (65519.99, 0x7BFF, 0x7BFF),  # below the threshold 65520
        (65520.0, 0x7C00, 0x7BFF),  # tie with an odd max: rounds up, past max
        (1e6, 0x7C00, 0x7BFF),
        (np.inf, 0x7C00, 0x7BFF),
        (-1e6, 0xFC00, 0xFBFF),
        (-np.inf, 0xFC00, 0xFBFF),
    ],
)
def test_fp16_overflow(x, ieee, saturate):
    assert encode(np.array([x]), "fp16").tolist() == [ieee]
    assert encode(np.array([x]), "fp16", overflow="saturate").tolist() == [saturate]


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS + ("bf16", "fp16"))
def test_every_code_round_trips(fmt, mode):
    f = get_format(fmt)
    codes = np.arange(1 << f.storage_bits, dtype=np.dtype(f"uint{f.storage_bits}"))
    vals = decode(codes, fmt)
    back = encode(vals, fmt, overflow=mode)
    assert back.dtype == codes.dtype
    want_vals = vals.copy()
    if mode == "saturate":  # +-inf clamps to +-max
        want_vals[np.isinf(vals)] = np.copysign(SPECS[fmt].max, vals[np.isinf(vals)])
    want = want_vals.astype(ML_DTYPES[fmt]).view(codes.dtype)  # exact: all representable
    assert_codes_equal(f"{fmt} {mode} encode(decode(code))", fmt, vals, back, want)
    assert_values_equal(f"{fmt} {mode} decode(encode(decode))", codes, decode(back, fmt), want_vals)


# ---------------------------------------------------------------------------------------------
# 6. fnuz has no negative zero
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_negative_values_rounding_to_zero(fmt, mode):
    tiny = SPECS[fmt].min_subnormal
    x = np.array([-0.0, -tiny / 2, -tiny / 4, -1e-30, -5e-324])  # -tiny/2 is a tie -> even 0
    codes = encode(x, fmt, overflow=mode)
    rounded = round_to_format(x, fmt, overflow=mode)
    if SPECS[fmt].has_neg_zero:
        assert codes.tolist() == [0x80] * x.size
        assert np.signbit(rounded).all()
    else:
        assert codes.tolist() == [0x00] * x.size
        assert not np.signbit(rounded).any()
    assert (rounded == 0).all()
    just_past = np.nextafter(-tiny / 2, -1.0)
    assert encode(np.array([just_past]), fmt, overflow=mode).tolist() == [0x81]


# ---------------------------------------------------------------------------------------------
# 7. Bad input
# ---------------------------------------------------------------------------------------------
def test_unknown_format_name():
    with pytest.raises(ValueError, match="e3m4") as err:
        get_format("e3m4")
    for name in FORMATS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="e3m4"):
        encode(np.array([1.0]), "e3m4")


@pytest.mark.parametrize("func", [encode, round_to_format])
def test_unknown_overflow_mode(func):
    with pytest.raises(ValueError, match=re.escape("wrap")):
        func(np.array([1.0]), "e4m3fn", overflow="wrap")


def test_aliases():
    assert get_format("float8_e4m3fn") is FORMATS["e4m3fn"]
    assert get_format("bfloat16") is FORMATS["bf16"]
    assert get_format(FORMATS["fp16"]) is FORMATS["fp16"]


# ---------------------------------------------------------------------------------------------
# Scalars and shapes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_scalar_and_0d_inputs_match_array_inputs(fmt, mode):
    values = [1.0, -0.0, -SPECS[fmt].min_subnormal / 4, 4 * SPECS[fmt].max, -np.inf, np.nan]
    want_codes = encode(np.array(values), fmt, mode)
    want_vals = round_to_format(np.array(values), fmt, mode)
    for v, code, val in zip(values, want_codes, want_vals, strict=True):
        for scalar in (v, np.float64(v), np.array(v)):
            got = encode(scalar, fmt, mode)
            assert np.shape(got) == () and got.dtype == want_codes.dtype, (scalar, got)
            assert_codes_equal(f"{fmt} {mode} scalar", fmt, [v], np.atleast_1d(got), code[None])
            assert_values_equal(
                f"{fmt} {mode} scalar",
                [v],
                np.atleast_1d(round_to_format(scalar, fmt, mode)),
                val[None],
            )


def test_encode_keeps_shape():
    x = np.linspace(-500, 500, 24).reshape(2, 3, 4)
    for fmt in FORMATS:
        assert encode(x, fmt).shape == x.shape
        assert decode(encode(x, fmt), fmt).shape == x.shape


# encode documents "NaN becomes FloatFormat.nan_code" for every format, output types included.
@pytest.mark.parametrize("fmt", OUT_FORMATS)
def test_out_format_nan_code(fmt):
    payloads = np.array([0x7FF0000000000001, 0xFFF8000000000123], np.uint64).view(np.float64)
    x = np.concatenate([[np.nan, -np.nan], payloads])
    assert encode(x, fmt).tolist() == [get_format(fmt).nan_code] * x.size


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2", "bf16", "fp16"])
def test_decode_takes_codes_of_any_integer_dtype_and_refuses_out_of_range(fmt):
    """Codes in a wider dtype decode as in their own; same-width signed codes are read as
    bits; a value that is no code of the format fails with a message naming it."""
    f = get_format(fmt)
    n = 1 << f.storage_bits
    codes = np.arange(n, dtype=code_dtype(fmt))
    want = decode(codes, fmt)
    assert_values_equal(f"{fmt} int64 codes", codes, decode(codes.astype(np.int64), fmt), want)
    signed = codes.view(np.dtype(f"i{codes.itemsize}"))
    assert_values_equal(f"{fmt} signed codes", codes, decode(signed, fmt), want)
    for bad in (n, -1):
        with pytest.raises(ValueError, match=f"code {bad} is not a code of {f.name}"):
            decode(np.array([0, bad], np.int64), fmt)


def _frexp_round_unbounded(x, f):
    """The textbook definition ``round_unbounded`` computes on the bits: quantum exponent
    ``max(floor(log2|x|), emin) - man_bits``, scale, ``rint``, scale back."""
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(x)
        q = np.maximum(e - 1, f.emin) - f.man_bits
        return np.ldexp(np.rint(np.ldexp(x, -q)), q)


def _frexp_spacing(x, f):
    ax = np.abs(x)
    with np.errstate(invalid="ignore"):
        _, e = np.frexp(ax)
    e = np.where(ax == 0, f.emin + 1, e)
    return np.ldexp(1.0, np.maximum(e - 1, f.emin) - f.man_bits)


def _float64_sample(n: int) -> np.ndarray:
    """Random float64 bit patterns (NaNs with any payload, subnormals, huge values), values
    spread over every format's range, each format's values and midpoints, and the edges."""
    rng = np.random.default_rng(20261124)
    raw = rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)
    spread = rng.standard_normal(n) * np.exp2(rng.integers(-160, 160, n))
    grids = []
    for f in FORMATS.values():
        if f.storage_bits <= 16:
            v = decode(np.arange(1 << f.storage_bits), f)
            grids += [v, v * (1 + 2.0 ** -(f.man_bits + 1)), np.nextafter(v, np.inf)]
    edges = np.array([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308,
                      1.7976931348623157e308, -1.7976931348623157e308])
    ones = np.array([0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF], np.uint64).view(np.float64)
    return np.concatenate([raw, spread, *grids, edges, ones])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_bit_level_rounding_and_spacing_match_the_frexp_definitions(fmt):
    """``round_unbounded`` and ``spacing`` work on the float64 bits (6x faster than frexp and
    ldexp); they must give the frexp formulas' bits on every input, NaN payloads aside."""
    f = get_format(fmt)
    x = _float64_sample(200_000)
    got, want = round_unbounded(x, f), _frexp_round_unbounded(x, f)
    same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{fmt}: round_unbounded({x[~same][:4]}) = {got[~same][:4]}, want {want[~same][:4]}"
    got, want = spacing(x, f), _frexp_spacing(x, f)
    same = got.view(np.uint64) == want.view(np.uint64)
    assert same.all(), f"{fmt}: spacing({x[~same][:4]}) = {got[~same][:4]}, want {want[~same][:4]}"
    for z in (1.5, np.float64(-3.0), np.array(2.5)):  # scalars and 0-d stay 0-d
        assert round_unbounded(z, f).shape == () and spacing(z, f).shape == ()


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_encode_table_keys_every_value_and_nothing_else(fmt):
    """The FP8 encoder looks codes up by bf16 bits: each non-NaN code under its value's key,
    the NaN code under every other key."""
    f = get_format(fmt)
    table = encode_table(fmt)
    vals = decode(np.arange(256), f)
    keyed = np.flatnonzero(table != f.nan_code)
    for code in np.flatnonzero(~np.isnan(vals)):
        key = int(np.float32(vals[code]).view(np.uint32)) >> 16
        assert table[key] == code, f"{fmt} code {code:#04x} ({vals[code]}) under key {key:#06x}"
    assert keyed.size == np.count_nonzero(~np.isnan(vals))
    assert not table.flags.writeable
    with pytest.raises(ValueError, match="8-bit formats, not bf16"):
        encode_table("bf16")


def test_where_or_zero_is_np_where_bit_for_bit():
    from golden.codecs import where_or_zero

    rng = np.random.default_rng(5)
    x = rng.standard_normal((33, 65))
    x.flat[:6] = [-0.0, 0.0, np.nan, np.inf, -np.inf, 5e-324]
    cond = rng.random(x.shape) < 0.5
    cond.flat[:6] = True
    got = where_or_zero(cond, x)
    assert np.array_equal(got.view(np.uint64), np.where(cond, x, 0.0).view(np.uint64))
    assert got.base is not x and np.shares_memory(got, x) is False
    strided = where_or_zero(cond[:, ::2], x[:, ::2])  # views in, a contiguous copy out
    want = np.ascontiguousarray(np.where(cond, x, 0.0)[:, ::2])
    assert np.array_equal(strided.view(np.uint64), want.view(np.uint64))
