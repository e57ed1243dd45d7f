"""``golden.quant`` against an independent torch implementation of vLLM's native FP8 quantization.

The ``t_*`` functions below are written with the torch operations vLLM's
``QuantFP8.forward_native`` / ``_quantize_group_native`` use, in the same order
(``x.abs().max(...)``, ``.to(torch.float32)``, ``/ _FP8_MAX``, ``.clamp(min=...)``,
``.reciprocal()``, ``.clamp(...).to(fp8)``; for groups and blocks a division and
``torch.exp2(torch.ceil(torch.log2(...)))``). Codes are compared bit for bit (NaN codes only by
NaN-ness: torch keeps a NaN's sign), scales bit for bit as float32.

Measured with torch 2.13.0+cpu (AVX2 and ATEN_CPU_CAPABILITY=default alike):

* The clamp bound ``_FP8_MIN_SCALING_FACTOR`` (a Python double) is applied rounded to float32.
* float32 ``reciprocal``, ``/`` and ``*`` on the CPU are the IEEE correctly rounded operations
  (checked in ``test_torch_float32_arithmetic_is_ieee``), so NumPy float32 reproduces them.
* ``torch.log2`` on float32 is NOT correctly rounded: an exhaustive sweep of all positive finite
  float32 inputs (about 50 s, not run here) found 112,079 results 1 ulp away from the correctly
  rounded value (44,655 of them in [2**-18, 2**10)), for example 0x1.0471e8p-18. In none of
  them does ``ceil`` differ, so UE8M0 scales still match the float64-then-round emulation.
  ``test_torch_log2_is_not_correctly_rounded_but_its_ceil_matches`` pins both facts.
* vLLM's ``forward_native`` cannot take a 3-D activation with per-token dynamic scales:
  ``group_broadcast(scale[B, M, 1], x.shape[-2:])`` compares the scale's dims 0 and 1 with M and
  K and raises. vLLM's linear layers quantize ``input.view(-1, K)``; the torch reference below
  does the same, and the golden model defines 3-D per-token/per-group scales that way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden import quant
from golden.codecs import decode, encode, round_to_format
from golden.formats import FP8_FORMATS, get_format

SEED = 20250613

TORCH_FP8 = {
    "e4m3fn": torch.float8_e4m3fn,
    "e5m2": torch.float8_e5m2,
    "e4m3fnuz": torch.float8_e4m3fnuz,
    "e5m2fnuz": torch.float8_e5m2fnuz,
}
TORCH_IN = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# =============================================================================================
# independent torch reference (vLLM's forward_native / _quantize_group_native, op for op)
# =============================================================================================


def t_fp8_max(fmt: str) -> float:
    dtype = TORCH_FP8[fmt]
    return 224.0 if dtype == torch.float8_e4m3fnuz else torch.finfo(dtype).max


def t_min_scaling_factor(fmt: str) -> float:
    return 1.0 / (t_fp8_max(fmt) * 512.0)  # a Python double, exactly as vLLM writes it


def _t_to_fp8(out: torch.Tensor, fmt: str) -> torch.Tensor:
    m = t_fp8_max(fmt)
    return out.clamp(-m, m).to(TORCH_FP8[fmt])


def t_static(x: torch.Tensor, scale: torch.Tensor, fmt: str) -> torch.Tensor:
    # scale numel 1 or [M, 1]: group_broadcast is a no-op there, plain broadcasting does the rest
    out = x.to(torch.float32) * scale.to(torch.float32).reciprocal()
    return _t_to_fp8(out, fmt)


def t_dynamic_per_token(x: torch.Tensor, fmt: str, scale_ub: torch.Tensor | None = None):
    shape = x.shape
    x = x.reshape(-1, shape[-1])  # vLLM's linear layers quantize input.view(-1, K)
    x_max, _ = x.abs().max(dim=-1)
    x_max = x_max.unsqueeze(-1).to(torch.float32)
    if scale_ub is not None:
        x_max = x_max.clamp(max=scale_ub)
    scale = (x_max / t_fp8_max(fmt)).clamp(min=t_min_scaling_factor(fmt))
    out = x.to(torch.float32) * scale.to(torch.float32).reciprocal()
    q = _t_to_fp8(out, fmt)
    return q.reshape(shape), scale.reshape(*shape[:-1], 1)


def t_dynamic_per_tensor(x: torch.Tensor, fmt: str):
    x_max = x.abs().max().unsqueeze(-1).to(torch.float32)
    scale = (x_max / t_fp8_max(fmt)).clamp(min=t_min_scaling_factor(fmt))
    out = x.to(torch.float32) * scale.to(torch.float32).reciprocal()
    return _t_to_fp8(out, fmt), scale


def t_group(x: torch.Tensor, fmt: str, group_size: int = 128, use_ue8m0: bool = False):
    orig_shape = x.shape
    hidden_dim = x.shape[-1]
    num_groups = (hidden_dim + group_size - 1) // group_size
    padded_dim = num_groups * group_size
    if padded_dim != hidden_dim:
        x = F.pad(x, (0, padded_dim - hidden_dim), mode="constant", value=0.0)
    x_grouped = x.view(-1, num_groups, group_size)
    absmax = x_grouped.abs().max(dim=-1, keepdim=True)[0].float()
    scales_raw = absmax / t_fp8_max(fmt)
    if use_ue8m0:
        scales_raw = torch.exp2(torch.ceil(torch.log2(scales_raw)))
    scales = scales_raw.clamp(min=t_min_scaling_factor(fmt))
    x_scaled = x_grouped / scales
    m = t_fp8_max(fmt)
    x_quant = x_scaled.clamp(-m, m).to(TORCH_FP8[fmt])
    x_quant = x_quant.view(-1, padded_dim)[..., :hidden_dim].reshape(orig_shape)
    scales = scales.squeeze(-1).reshape(orig_shape[:-1] + (num_groups,))
    return x_quant, scales


def t_block(w: torch.Tensor, fmt: str, block=(128, 128), use_ue8m0: bool = False):
    n, k = w.shape
    bn, bk = block
    nb, kb = -(-n // bn), -(-k // bk)
    wp = F.pad(w, (0, kb * bk - k, 0, nb * bn - n), mode="constant", value=0.0)
    w_view = wp.view(nb, bn, kb, bk)
    absmax = w_view.abs().amax(dim=(1, 3), keepdim=True).float()
    scales_raw = absmax / t_fp8_max(fmt)
    if use_ue8m0:
        scales_raw = torch.exp2(torch.ceil(torch.log2(scales_raw)))
    scales = scales_raw.clamp(min=t_min_scaling_factor(fmt))
    m = t_fp8_max(fmt)
    q = (w_view / scales).clamp(-m, m).to(TORCH_FP8[fmt])
    return q.view(nb * bn, kb * bk)[:n, :k], scales.view(nb, kb)


# =============================================================================================
# helpers
# =============================================================================================


def t_codes(q: torch.Tensor) -> np.ndarray:
    return q.contiguous().view(torch.uint8).numpy()


def assert_codes_equal(got: np.ndarray, want_q: torch.Tensor, fmt: str, what: str = "") -> None:
    want = t_codes(want_q)
    assert got.dtype == np.uint8, f"{what}: codes dtype {got.dtype}"
    assert got.shape == want.shape, f"{what}: codes shape {got.shape} != {want.shape}"
    gnan, wnan = np.isnan(decode(got, fmt)), np.isnan(decode(want, fmt))
    bad = (gnan != wnan) | (~gnan & (got != want))
    if bad.any():
        idx = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)[:5]]
        detail = ", ".join(f"{i}: golden 0x{got[i]:02x} torch 0x{want[i]:02x}" for i in idx)
        raise AssertionError(f"{what} [{fmt}]: {int(bad.sum())} codes differ; first {detail}")


def assert_scales_equal(got: np.ndarray, want_t: torch.Tensor, what: str = "") -> None:
    want = want_t.detach().numpy()
    assert got.dtype == np.float32, f"{what}: scales dtype {got.dtype}"
    assert got.shape == want.shape, f"{what}: scales shape {got.shape} != {want.shape}"
    gnan, wnan = np.isnan(got), np.isnan(want)
    bad = (gnan != wnan) | (~gnan & (got.view(np.uint32) != want.view(np.uint32)))
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} scales differ; first {i}: golden {got[i]!r} torch {want[i]!r}"
        )


def to_torch(x64: np.ndarray, in_dtype: str) -> torch.Tensor:
    """Exact: the values are representable in ``in_dtype`` (asserted)."""
    r = round_to_format(x64, in_dtype)
    assert np.array_equal(r, x64, equal_nan=True), "test input not representable in " + in_dtype
    return torch.from_numpy(x64.astype(np.float32)).to(TORCH_IN[in_dtype])


def from_torch(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def random_input(rng: np.random.Generator, shape, in_dtype: str, spread: float = 8.0) -> np.ndarray:
    """Gaussian rows of very different magnitudes (2**U(-spread, spread)), rounded to in_dtype."""
    rows = rng.uniform(-spread, spread, size=tuple(shape[:-1]) + (1,))
    x = rng.standard_normal(shape) * np.exp2(rows)
    if in_dtype == "fp16":
        x = np.clip(x, -60000, 60000)
    return from_torch(torch.from_numpy(x.astype(np.float32)).to(TORCH_IN[in_dtype]))


def positive_values(fmt: str) -> np.ndarray:
    """Sorted non-negative finite values of fmt up to vLLM's FP8_MAX."""
    v = decode(np.arange(256, dtype=np.uint8), fmt)
    v = np.unique(v[np.isfinite(v) & (v >= 0)])
    return v[v <= quant.fp8_max(fmt)]


def midpoints(fmt: str) -> np.ndarray:
    v = positive_values(fmt)
    return (v[:-1] + v[1:]) / 2


def f32_next(v, direction) -> np.float32:
    return np.nextafter(np.float32(v), np.float32(direction))


SHAPES = [(1, 128), (7, 300), (17, 520), (2, 5, 257), (1, 1)]


# =============================================================================================
# constants and torch arithmetic facts the emulation relies on
# =============================================================================================


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_fp8_max_matches_vllm_rule(fmt):
    assert quant.fp8_max(fmt) == t_fp8_max(fmt)
    assert quant.fp8_max("e4m3fn") == 448.0 and quant.fp8_max("e5m2") == 57344.0
    assert quant.fp8_max("e4m3fnuz") == 224.0


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_min_scaling_factor_is_the_float32_clamp_bound(fmt):
    m = t_min_scaling_factor(fmt)
    got = quant.min_scaling_factor(fmt)
    assert isinstance(got, np.float32)
    # what clamp really applies: the bound on a zero and on the float32 just below the double
    probe = torch.tensor([0.0, float(f32_next(np.float32(m), 0)), float(np.float32(m))])
    applied = probe.clamp(min=m).numpy()
    assert np.all(applied.view(np.uint32) == got.view(np.uint32))
    # ... which is NOT the double itself: a float64 reference would use a different number
    assert float(got) != m


def test_torch_float32_arithmetic_is_ieee():
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 0x7F800000, size=200_000, dtype=np.uint32).view(np.float32)
    b = rng.integers(0, 0x7F800000, size=200_000, dtype=np.uint32).view(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with np.errstate(all="ignore"):
        assert np.array_equal(ta.reciprocal().numpy().view(np.uint32), (np.float32(1) / a).view(np.uint32))
        assert np.array_equal((ta / tb).numpy().view(np.uint32), (a / b).view(np.uint32))
        assert np.array_equal((ta * tb).numpy().view(np.uint32), (a * b).view(np.uint32))
        assert np.array_equal((ta / 448.0).numpy().view(np.uint32), (a / np.float32(448)).view(np.uint32))
    # bf16 / float32 tensor promotes to float32 before one division (the group path)
    tbf = ta.to(torch.bfloat16)
    assert (tbf / tb).dtype == torch.float32
    with np.errstate(all="ignore"):
        assert np.array_equal((tbf / tb).numpy().view(np.uint32), (tbf.float().numpy() / b).view(np.uint32))


# Inputs where torch 2.13's CPU log2 (float32) is 1 ulp off the correctly rounded result,
# found by the exhaustive sweep described in the module docstring.
TORCH_LOG2_NOT_CR = [
    "0x1.0471e8p-18", "0x1.0ab70ep-18", "0x1.0c574ap-18", "0x1.10e462p-18",
    "0x1.03a22ep-12", "0x1.834ec4p-11", "0x1.f39342p-10", "0x1.386068p-8",
    "0x1.f76650p-8", "0x1.b9a962p-7", "0x1.83cae6p-6", "0x1.3f1308p-5",
]


def test_torch_log2_is_not_correctly_rounded_but_its_ceil_matches():
    """Measured torch behaviour: log2 is faithful, not correctly rounded; ceil(log2) agrees."""
    x = np.array([float.fromhex(h) for h in TORCH_LOG2_NOT_CR], dtype=np.float32)
    tl = torch.log2(torch.from_numpy(x)).numpy()
    cr = np.log2(x.astype(np.float64)).astype(np.float32)  # the golden emulation
    ulps = np.abs(tl.view(np.int32).astype(np.int64) - cr.view(np.int32).astype(np.int64))
    assert np.all(ulps == 1), f"torch log2 vs correctly rounded, in ulps: {ulps}"
    assert np.array_equal(np.ceil(tl), np.ceil(cr))

    # where ceil could flip: +-256 ulps around every power of two a scale can take ...
    near = []
    for n in range(-40, 40):
        p = np.float32(2.0**n).view(np.int32)
        near.append(np.arange(p - 256, p + 257, dtype=np.int32).view(np.float32))
    # ... and a random sample of the whole positive range
    rng = np.random.default_rng(SEED)
    sample = rng.integers(1, 0x7F800000, size=300_000, dtype=np.uint32).view(np.float32)
    x = np.concatenate(near + [sample])
    tl = torch.log2(torch.from_numpy(x)).numpy()
    cr = np.log2(x.astype(np.float64)).astype(np.float32)
    assert np.array_equal(np.ceil(tl), np.ceil(cr))
    assert (tl != cr).any(), "torch log2 became correctly rounded here; update the notes"


def test_ue8m0_rounds_one_ulp_above_a_power_of_two_down():
    """vLLM's float32 exp2(ceil(log2(s))) is not a true ceil-to-power-of-two: measured in torch
    and reproduced by golden, for s one float32 ulp above 2**n the scale is 2**n when n >= 4 or
    n <= -5, and 2**(n+1) in between (where the spacing above n is finer)."""
    ns = np.arange(-20, 20)
    s = np.array([f32_next(2.0**int(n), np.inf) for n in ns], dtype=np.float32)
    t = torch.exp2(torch.ceil(torch.log2(torch.from_numpy(s)))).numpy()
    expect_down = (ns >= 4) | (ns <= -5)
    want = np.where(expect_down, np.exp2(ns), np.exp2(ns + 1)).astype(np.float32)
    assert np.array_equal(t, want)
    # golden: put s in as amax/448 with fp32 inputs where that division is exact-ish; checked
    # through quantize_group on rows whose amax gives exactly these s
    amax = []
    for n, sv in zip(ns, s, strict=False):
        a = _amax_for_scale(sv, "e4m3fn")
        if a is not None:
            amax.append((int(n), a))
    assert len(amax) >= 30
    x = np.zeros((len(amax), 128))
    for i, (_, a) in enumerate(amax):
        x[i, 0], x[i, 1] = a, -a / 3
    x = x.astype(np.float32).astype(np.float64)
    codes, scales = quant.quantize_group(x, "e4m3fn", 128, ue8m0=True, in_dtype="fp32")
    for i, (n, _) in enumerate(amax):
        down = n >= 4 or n <= -5
        want_s = max(np.float32(2.0 ** (n if down else n + 1)), quant.min_scaling_factor("e4m3fn"))
        assert scales[i, 0] == want_s, (n, scales[i, 0])
        if down and n > -17:  # amax / 2**n > 448: the largest element reaches the clamp
            assert codes[i, 0] == 0x7E
    tq, ts = t_group(torch.from_numpy(x.astype(np.float32)), "e4m3fn", 128, True)
    assert_codes_equal(codes, tq, "e4m3fn", "ue8m0 one ulp above")
    assert_scales_equal(scales, ts, "ue8m0 one ulp above")


def _amax_for_scale(s: np.float32, fmt: str) -> np.float32 | None:
    """A float32 amax with float32(amax / fp8_max) == s, or None."""
    m = np.float32(quant.fp8_max(fmt))
    a0 = np.float32(np.float64(s) * float(m)).view(np.int32)
    for d in range(-64, 65):
        a = np.int32(a0 + d).view(np.float32)
        if a / m == s:
            return a
    return None


# =============================================================================================
# random inputs
# =============================================================================================


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16", "fp32"])
def test_random_dynamic_per_token_and_per_tensor(fmt, in_dtype):
    rng = np.random.default_rng([SEED, FP8_FORMATS.index(fmt), len(in_dtype)])
    for shape in SHAPES:
        x = random_input(rng, shape, in_dtype)
        xt = to_torch(x, in_dtype)
        codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype=in_dtype)
        tq, ts = t_dynamic_per_token(xt, fmt)
        assert scale.shape == shape[:-1] + (1,)
        assert_codes_equal(codes, tq, fmt, f"per-token {shape} {in_dtype}")
        assert_scales_equal(scale, ts, f"per-token {shape} {in_dtype}")

        codes, scale = quant.quantize_dynamic_per_tensor(x, fmt, in_dtype=in_dtype)
        tq, ts = t_dynamic_per_tensor(xt, fmt)
        assert scale.shape == (1,)
        assert_codes_equal(codes, tq, fmt, f"per-tensor {shape} {in_dtype}")
        assert_scales_equal(scale, ts, f"per-tensor {shape} {in_dtype}")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16"])
def test_random_static(fmt, in_dtype):
    rng = np.random.default_rng([SEED, 1, FP8_FORMATS.index(fmt), len(in_dtype)])
    for shape in SHAPES:
        x = random_input(rng, shape, in_dtype)
        xt = to_torch(x, in_dtype)
        # per-tensor scales of several shapes, and a per-row [..., M, 1] scale
        s = np.float32(rng.uniform(1e-3, 1.0))
        for sc in (np.array(s), np.array([s]), np.full((1, 1), s)):
            codes = quant.quantize_static(x, sc, fmt, in_dtype=in_dtype)
            assert_codes_equal(codes, t_static(xt, torch.from_numpy(sc), fmt), fmt, f"static {sc.shape}")
        rows = rng.uniform(1e-4, 2.0, size=shape[:-1] + (1,)).astype(np.float32)
        codes = quant.quantize_static(x, rows, fmt, in_dtype=in_dtype)
        assert_codes_equal(codes, t_static(xt, torch.from_numpy(rows), fmt), fmt, f"static rows {shape}")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("ue8m0", [False, True])
def test_random_group(fmt, in_dtype, ue8m0):
    rng = np.random.default_rng([SEED, 2, FP8_FORMATS.index(fmt), len(in_dtype), ue8m0])
    for shape, g in [((1, 128), 128), ((7, 300), 128), ((17, 520), 128), ((2, 5, 257), 128),
                     ((4, 200), 64), ((3, 50), 7), ((2, 5), 128)]:
        x = random_input(rng, shape, in_dtype)
        codes, scales = quant.quantize_group(x, fmt, g, ue8m0, in_dtype=in_dtype)
        tq, ts = t_group(to_torch(x, in_dtype), fmt, g, ue8m0)
        assert scales.shape == shape[:-1] + (-(-shape[-1] // g),)
        assert_codes_equal(codes, tq, fmt, f"group {shape} g={g}")
        assert_scales_equal(scales, ts, f"group {shape} g={g}")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16"])
def test_random_weights(fmt, in_dtype):
    rng = np.random.default_rng([SEED, 3, FP8_FORMATS.index(fmt), len(in_dtype)])
    for shape in [(160, 260), (1, 5), (130, 129)]:
        w = random_input(rng, shape, in_dtype, spread=3.0)
        wt = to_torch(w, in_dtype)
        codes, scale = quant.quantize_weight_per_channel(w, fmt, in_dtype=in_dtype)
        tq, ts = t_dynamic_per_token(wt, fmt)
        assert scale.shape == (shape[0], 1)
        assert_codes_equal(codes, tq, fmt, f"per-channel {shape}")
        assert_scales_equal(scale, ts, f"per-channel {shape}")

        codes, scale = quant.quantize_weight_per_tensor(w, fmt, in_dtype=in_dtype)
        tq, ts = t_dynamic_per_tensor(wt, fmt)
        assert_codes_equal(codes, tq, fmt, f"weight per-tensor {shape}")
        assert_scales_equal(scale, ts, f"weight per-tensor {shape}")

        for block in [(128, 128), (64, 32), (1, 128)]:
            for ue8m0 in (False, True):
                codes, scales = quant.quantize_block(w, fmt, block, ue8m0, in_dtype=in_dtype)
                tq, ts = t_block(wt, fmt, block, ue8m0)
                assert scales.shape == (-(-shape[0] // block[0]), -(-shape[1] // block[1]))
                assert_codes_equal(codes, tq, fmt, f"block {shape} {block} ue8m0={ue8m0}")
                assert_scales_equal(scales, ts, f"block {shape} {block} ue8m0={ue8m0}")


def test_block_1xg_equals_group():
    """A (1, g) block is a 1 x g group: the two golden paths must agree (and with torch)."""
    rng = np.random.default_rng([SEED, 4])
    w = random_input(rng, (9, 333), "bf16")
    for ue8m0 in (False, True):
        a = quant.quantize_block(w, "e4m3fn", (1, 128), ue8m0, in_dtype="bf16")
        b = quant.quantize_group(w, "e4m3fn", 128, ue8m0, in_dtype="bf16")
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# =============================================================================================
# adversarial inputs
# =============================================================================================


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16"])
def test_exact_ties_round_to_even(fmt, in_dtype):
    """amax = FP8_MAX * 2**-3 makes the scale exactly 2**-3, so x = midpoint * 2**-3 lands
    exactly on an fp8 midpoint (in the reciprocal and the division paths alike)."""
    k = 3
    mids = midpoints(fmt)
    vals = positive_values(fmt)
    row = np.concatenate([[quant.fp8_max(fmt)], mids, vals, -mids, -vals]) * 2.0**-k
    x = np.stack([row, row[::-1]])  # amax first and last
    xt = to_torch(x, in_dtype)
    n_mid = len(mids)
    tie = np.zeros(row.shape, bool)
    tie[1 : 1 + n_mid] = True
    tie[1 + n_mid + len(vals) : 1 + 2 * n_mid + len(vals)] = True

    codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype=in_dtype)
    assert np.all(scale == np.float32(2.0**-k))
    assert_codes_equal(codes, t_dynamic_per_token(xt, fmt)[0], fmt, "ties per-token")
    # independent of torch: every tie went to the even neighbour (last code bit 0) ...
    assert np.all(codes[0][tie] & 1 == 0)
    # ... and every exact value is kept
    exact = ~tie
    exact[0] = False
    np.testing.assert_array_equal(decode(codes[0][exact], fmt), row[exact] * 2.0**k)

    codes_s = quant.quantize_static(x, np.float32(2.0**-k), fmt)
    assert np.array_equal(codes_s, codes)
    assert_codes_equal(codes_s, t_static(xt, torch.tensor([2.0**-k]), fmt), fmt, "ties static")

    codes_g, scales_g = quant.quantize_group(x, fmt, 32, in_dtype=in_dtype)
    tq, ts = t_group(xt, fmt, 32)
    assert_codes_equal(codes_g, tq, fmt, "ties group")
    assert_scales_equal(scales_g, ts, "ties group")
    codes_b, scales_b = quant.quantize_block(x, fmt, (2, x.shape[1]), in_dtype=in_dtype)
    assert np.array_equal(codes_b, codes)  # same scale 2**-k, division by it is exact


def _float32_tie_rows(fmt: str, rng: np.random.Generator, op: str, n_rows: int = 6):
    """fp32 rows whose amax is a random float32, with elements x where the float32 result of
    ``x * (1/scale)`` (op "mul") or ``x / scale`` (op "div") is exactly an fp8 midpoint while
    the other operation is not: these tell single float32 roundings apart."""
    m = np.float32(quant.fp8_max(fmt))
    mids = midpoints(fmt)
    mids = mids[mids >= get_format(fmt).min_normal]
    rows = []
    while len(rows) < n_rows:
        amax = np.float32(rng.uniform(0.3, 40.0))
        s = amax / m
        r = np.float32(1) / s
        row = [amax]
        for mid in mids:
            c = np.float32(mid * float(s)).view(np.int32)
            for d in range(-3, 4):
                x = np.int32(c + d).view(np.float32)
                mul, div = x * r, x / s
                if op == "mul" and mul == mid and div != mid and abs(x) < amax:
                    row.append(x)
                    row.append(-x)
                if op == "div" and div == mid and mul != mid and abs(x) < amax:
                    row.append(x)
                    row.append(-x)
        if len(row) > 8:
            rows.append(np.array(row, dtype=np.float32))
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out.astype(np.float64)


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_float32_rounding_ties_reciprocal_path(fmt):
    rng = np.random.default_rng([SEED, 5, FP8_FORMATS.index(fmt)])
    x = _float32_tie_rows(fmt, rng, "mul")
    xt = torch.from_numpy(x.astype(np.float32))
    codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype="fp32")
    tq, ts = t_dynamic_per_token(xt, fmt)
    assert_codes_equal(codes, tq, fmt, "f32 ties per-token")
    assert_scales_equal(scale, ts, "f32 ties per-token")
    # the same rows through a division (the group rule) round differently somewhere: a test
    # that compared a division-based per-token quantizer with torch would fail here
    alt = encode((x.astype(np.float32) / scale).astype(np.float64), fmt)
    assert (alt != codes).any()
    codes_s = quant.quantize_static(x, scale, fmt, in_dtype="fp32")
    assert np.array_equal(codes_s, codes)
    assert_codes_equal(codes_s, t_static(xt, torch.from_numpy(scale), fmt), fmt, "f32 ties static")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_float32_rounding_ties_division_path(fmt):
    rng = np.random.default_rng([SEED, 6, FP8_FORMATS.index(fmt)])
    x = _float32_tie_rows(fmt, rng, "div")
    g = x.shape[1]
    codes, scales = quant.quantize_group(x, fmt, g, in_dtype="fp32")
    tq, ts = t_group(torch.from_numpy(x.astype(np.float32)), fmt, g)
    assert_codes_equal(codes, tq, fmt, "f32 ties group")
    assert_scales_equal(scales, ts, "f32 ties group")
    alt = encode((x.astype(np.float32) * (np.float32(1) / scales)).astype(np.float64), fmt)
    assert (alt != codes).any()
    codes_b, scales_b = quant.quantize_block(x, fmt, (1, g), in_dtype="fp32")
    assert np.array_equal(codes_b, codes) and np.array_equal(scales_b, scales)


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_at_and_beyond_fp8_max(fmt):
    m = quant.fp8_max(fmt)
    big = np.array([m, m * 1.0078125, m * 1.0625, m * 1.25, m * 2, m * 64, 3.0e38, np.inf])
    row = np.concatenate([big, -big, [0.0, -0.0, 1.0]])
    x = round_to_format(np.stack([row, row * 0.5]), "fp32")
    xt = to_torch(x, "fp32")
    for s in (1.0, 0.25):
        codes = quant.quantize_static(x, np.float32(s), fmt, in_dtype="fp32")
        assert_codes_equal(codes, t_static(xt, torch.tensor([s]), fmt), fmt, f"static beyond max s={s}")
        vals = decode(codes, fmt)
        assert np.nanmax(np.abs(vals)) == m  # clamped, never inf or NaN from overflow
        assert not np.isnan(vals).any()
    # dynamic: the inf makes the scale inf, 1/inf = 0, inf * 0 = NaN, finite * 0 = +-0
    codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype="fp32")
    tq, ts = t_dynamic_per_token(xt, fmt)
    assert_codes_equal(codes, tq, fmt, "dynamic with inf")
    assert_scales_equal(scale, ts, "dynamic with inf")
    assert np.all(np.isinf(scale))
    vals = decode(codes, fmt)
    assert np.isnan(vals[np.isinf(x)]).all() and np.all(vals[np.isfinite(x)] == 0)
    # bf16's largest finite values
    bmax = float.fromhex("0x1.fep127")
    xb = np.array([[bmax, -bmax, 1.0, 2.0**-133], [bmax / 3, 0.0, 1.0, -1.0]])
    xb = round_to_format(xb, "bf16")
    for fn, tfn in [(quant.quantize_dynamic_per_token, t_dynamic_per_token),
                    (quant.quantize_dynamic_per_tensor, t_dynamic_per_tensor)]:
        codes, scale = fn(xb, fmt, in_dtype="bf16")
        tq, ts = tfn(to_torch(xb, "bf16"), fmt)
        assert_codes_equal(codes, tq, fmt, "bf16 max")
        assert_scales_equal(scale, ts, "bf16 max")
    for ue8m0 in (False, True):
        codes, scales = quant.quantize_group(xb, fmt, 2, ue8m0, in_dtype="bf16")
        tq, ts = t_group(to_torch(xb, "bf16"), fmt, 2, ue8m0)
        assert_codes_equal(codes, tq, fmt, "bf16 max group")
        assert_scales_equal(scales, ts, "bf16 max group")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp16"])
def test_zero_rows_outliers_and_tiny_amax(fmt, in_dtype):
    rng = np.random.default_rng([SEED, 7, FP8_FORMATS.index(fmt), len(in_dtype)])
    K = 300
    top = 3.0e38 if in_dtype == "bf16" else 65504.0
    tiny = 2.0**-133 if in_dtype == "bf16" else 2.0**-24
    lo = 2.0**-9  # amax / 448 == the min scaling factor's double, before rounding
    rows = [
        np.zeros(K),
        -np.zeros(K),
        random_input(rng, (K,), in_dtype, spread=0) * 1e-3,
    ]
    r = random_input(rng, (K,), in_dtype, spread=0)
    r[17] = top  # a single huge outlier flushes the row to zero
    rows.append(r)
    r = random_input(rng, (K,), in_dtype, spread=0)
    r[200] = -top / 7
    rows.append(r)
    for amax in (lo, lo * (1 - 2.0**-8), lo * (1 + 2.0**-7), lo * 4, lo / 4, 1e-30, tiny, 2.0**-24):
        r = random_input(rng, (K,), in_dtype, spread=0)
        r = r / np.abs(r).max() * amax
        r[5] = amax
        r[6] = -amax / 3
        rows.append(r)
    x = round_to_format(np.stack(rows), in_dtype)
    xt = to_torch(x, in_dtype)
    codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype=in_dtype)
    tq, ts = t_dynamic_per_token(xt, fmt)
    assert_codes_equal(codes, tq, fmt, "zero/outlier/tiny per-token")
    assert_scales_equal(scale, ts, "zero/outlier/tiny per-token")
    msf = quant.min_scaling_factor(fmt)
    assert scale[0, 0] == msf and scale[1, 0] == msf
    assert np.all(codes[0] == 0)
    assert np.all(codes[1] == (0 if fmt.endswith("fnuz") else 0x80))  # -0 kept where it exists
    for g in (128, 64):
        for ue8m0 in (False, True):
            codes, scales = quant.quantize_group(x, fmt, g, ue8m0, in_dtype=in_dtype)
            tq, ts = t_group(xt, fmt, g, ue8m0)
            assert_codes_equal(codes, tq, fmt, f"zero/outlier/tiny group g={g} ue8m0={ue8m0}")
            assert_scales_equal(scales, ts, f"zero/outlier/tiny group g={g} ue8m0={ue8m0}")
            assert np.all(scales >= msf)
            codes, scales = quant.quantize_block(x, fmt, (4, g), ue8m0, in_dtype=in_dtype)
            tq, ts = t_block(xt, fmt, (4, g), ue8m0)
            assert_codes_equal(codes, tq, fmt, f"zero/outlier/tiny block ue8m0={ue8m0}")
            assert_scales_equal(scales, ts, f"zero/outlier/tiny block ue8m0={ue8m0}")


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_scale_ub_clipping(fmt):
    rng = np.random.default_rng([SEED, 8, FP8_FORMATS.index(fmt)])
    x = random_input(rng, (12, 257), "bf16", spread=4)
    x[3, 9] = np.inf
    x[4, 10] = np.nan
    x[5] = 0.0
    x = x.reshape(2, 6, 257)  # 3-D too
    xt = to_torch(x, "bf16")
    amax = np.nanmax(np.abs(x), axis=-1)
    for ub in (np.float32(1.5), float(np.median(amax[np.isfinite(amax)])), np.float32(np.inf), 1e-6):
        ub32 = np.float32(ub)
        codes, scale = quant.quantize_dynamic_per_token(x, fmt, scale_ub=ub32, in_dtype="bf16")
        tq, ts = t_dynamic_per_token(xt, fmt, torch.tensor([ub32]))
        assert_codes_equal(codes, tq, fmt, f"scale_ub={ub32}")
        assert_scales_equal(scale, ts, f"scale_ub={ub32}")
        if np.isfinite(ub32):
            # the inf row is bounded by scale_ub: inf * (1/scale) = inf, clamped to FP8_MAX
            assert np.isfinite(scale[0, 3, 0]) and decode(codes[0, 3, 9], fmt) == quant.fp8_max(fmt)
        assert np.isnan(scale[0, 4, 0])  # NaN passes clamp(max=...)
    clipped = quant.quantize_dynamic_per_token(x, fmt, scale_ub=np.float32(1.5), in_dtype="bf16")[1]
    free = quant.quantize_dynamic_per_token(x, fmt, in_dtype="bf16")[1]
    assert (clipped < free).any()


@pytest.mark.parametrize("fmt", FP8_FORMATS)
@pytest.mark.parametrize("in_dtype", ["bf16", "fp32"])
def test_ue8m0_power_of_two_boundaries(fmt, in_dtype):
    """amax / FP8_MAX exactly 2**n, one float32 ulp above and below (fp32 inputs), and one
    input-dtype ulp above and below (bf16 inputs)."""
    m = quant.fp8_max(fmt)
    amaxes = []
    for n in range(-18, 9):
        p = np.float32(2.0**n)
        if in_dtype == "fp32":
            for s in (p, f32_next(p, np.inf), f32_next(p, 0), f32_next(f32_next(p, np.inf), np.inf)):
                a = _amax_for_scale(s, fmt)
                if a is not None:
                    amaxes.append(float(a))
        else:
            a = round_to_format(m * 2.0**n, "bf16")
            amaxes += [a, a * (1 + 2.0**-7), a * (1 - 2.0**-8)]
    assert len(amaxes) > 40
    rng = np.random.default_rng([SEED, 9, FP8_FORMATS.index(fmt), len(in_dtype)])
    x = np.zeros((len(amaxes), 64))
    for i, a in enumerate(amaxes):
        row = random_input(rng, (64,), in_dtype, spread=0)
        row = round_to_format(row / np.abs(row).max() * a * 0.999, in_dtype)
        row[i % 64] = a if i % 2 else -a
        x[i] = row
    x = round_to_format(x, in_dtype)
    xt = to_torch(x, in_dtype)
    codes, scales = quant.quantize_group(x, fmt, 64, ue8m0=True, in_dtype=in_dtype)
    tq, ts = t_group(xt, fmt, 64, True)
    assert_codes_equal(codes, tq, fmt, "ue8m0 boundaries")
    assert_scales_equal(scales, ts, "ue8m0 boundaries")
    # independent of torch: every UE8M0 scale is a power of two (or the clamp bound)
    mant, _ = np.frexp(scales.astype(np.float64))
    assert np.all((mant == 0.5) | (scales == quant.min_scaling_factor(fmt)))
    codes_b, scales_b = quant.quantize_block(x, fmt, (1, 64), ue8m0=True, in_dtype=in_dtype)
    assert np.array_equal(codes_b, codes) and np.array_equal(scales_b, scales)


@pytest.mark.parametrize("fmt", FP8_FORMATS)
def test_nan_and_inf_inputs(fmt):
    rng = np.random.default_rng([SEED, 10, FP8_FORMATS.index(fmt)])
    x = random_input(rng, (6, 260), "bf16", spread=2)
    x[0, 3] = np.nan
    x[1, 200] = np.inf
    x[2, 0] = -np.inf
    x[2, 1] = np.nan
    x[3, 129] = -np.inf  # second group only
    xt = to_torch(x, "bf16")
    codes, scale = quant.quantize_dynamic_per_token(x, fmt, in_dtype="bf16")
    tq, ts = t_dynamic_per_token(xt, fmt)
    assert_codes_equal(codes, tq, fmt, "nan/inf per-token")
    assert_scales_equal(scale, ts, "nan/inf per-token")
    assert np.isnan(decode(codes[0], fmt)).all() and np.isnan(scale[0, 0])
    codes, scale = quant.quantize_dynamic_per_tensor(x, fmt, in_dtype="bf16")
    assert_codes_equal(codes, t_dynamic_per_tensor(xt, fmt)[0], fmt, "nan/inf per-tensor")
    assert np.isnan(decode(codes, fmt)).all()
    for ue8m0 in (False, True):
        codes, scales = quant.quantize_group(x, fmt, 128, ue8m0, in_dtype="bf16")
        tq, ts = t_group(xt, fmt, 128, ue8m0)
        assert_codes_equal(codes, tq, fmt, "nan/inf group")
        assert_scales_equal(scales, ts, "nan/inf group")
        assert np.isinf(scales[3, 1]) and np.isfinite(scales[3, 0])
        codes, scales = quant.quantize_block(x, fmt, (2, 128), ue8m0, in_dtype="bf16")
        tq, ts = t_block(xt, fmt, (2, 128), ue8m0)
        assert_codes_equal(codes, tq, fmt, "nan/inf block")
        assert_scales_equal(scales, ts, "nan/inf block")
    # static: NaN stays NaN, +-inf clamps to +-FP8_MAX
    codes = quant.quantize_static(x, np.float32(0.01), fmt, in_dtype="bf16")
    assert_codes_equal(codes, t_static(xt, torch.tensor([0.01]), fmt), fmt, "nan/inf static")
    assert decode(codes[1, 200], fmt) == quant.fp8_max(fmt)
    # degenerate static scales are computed, not rejected: 0 -> 1/0 = inf -> x*inf
    for s in (0.0, -0.5, np.inf):
        codes = quant.quantize_static(x[4:], np.float32(s), fmt, in_dtype="bf16")
        assert_codes_equal(codes, t_static(xt[4:], torch.tensor([s]), fmt), fmt, f"static s={s}")


# =============================================================================================
# input validation
# =============================================================================================


def test_validation_errors():
    x = np.ones((2, 8))
    with pytest.raises(ValueError, match="fmt='e3m4'"):
        quant.quantize_dynamic_per_token(x, "e3m4")
    with pytest.raises(ValueError, match="fmt='bf16' is not an FP8 format"):
        quant.quantize_group(x, "bf16")
    with pytest.raises(ValueError, match="fmt"):
        quant.fp8_max("int8")
    with pytest.raises(ValueError, match=r"w must have exactly 2 dimensions, got shape \(8,\)"):
        quant.quantize_weight_per_channel(np.ones(8), "e4m3fn")
    with pytest.raises(ValueError, match="w must have exactly 2 dimensions"):
        quant.quantize_block(np.ones((2, 2, 2)), "e4m3fn")
    with pytest.raises(ValueError, match="x must have at least 1 dimensions"):
        quant.quantize_dynamic_per_token(np.float64(1.0), "e4m3fn")
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        quant.quantize_dynamic_per_token(np.ones((2, 8), dtype=np.int32), "e4m3fn")
    with pytest.raises(ValueError, match=r"x\[0, 1\] = 1.00390625 is not exactly representable in bf16"):
        quant.quantize_dynamic_per_token(np.array([[1.0, 1 + 2.0**-8]]), "e4m3fn", in_dtype="bf16")
    with pytest.raises(ValueError, match="not exactly representable in fp32"):
        quant.quantize_group(np.array([[0.1]]), "e4m3fn")
    with pytest.raises(ValueError, match="in_dtype='e4m3fn'"):
        quant.quantize_group(x, "e4m3fn", in_dtype="e4m3fn")
    with pytest.raises(ValueError, match="empty last dimension"):
        quant.quantize_dynamic_per_token(np.ones((2, 0)), "e4m3fn")
    with pytest.raises(ValueError, match="x is empty"):
        quant.quantize_dynamic_per_tensor(np.ones((0, 3)), "e4m3fn")
    with pytest.raises(ValueError, match=r"scale must have numel 1 or a shape like \[M, 1\].*\(2, 2\)"):
        quant.quantize_static(x, np.ones((2, 2), np.float32), "e4m3fn")
    with pytest.raises(ValueError, match=r"got shape \(3, 1\)"):
        quant.quantize_static(x, np.ones((3, 1), np.float32), "e4m3fn")
    with pytest.raises(ValueError, match="scale must hold float32 values.*0.1"):
        quant.quantize_static(x, np.array([0.1]), "e4m3fn")
    for bad in (0, -128, 1.5, True, None):
        with pytest.raises(ValueError, match=f"group_size must be a positive integer, got {bad!r}"):
            quant.quantize_group(x, "e4m3fn", bad)
    with pytest.raises(ValueError, match=r"block\[0\] must be a positive integer, got 0"):
        quant.quantize_block(x, "e4m3fn", (0, 128))
    with pytest.raises(ValueError, match=r"block must be a pair"):
        quant.quantize_block(x, "e4m3fn", (128,))
    with pytest.raises(ValueError, match="scale_ub must be a positive float32.*nan"):
        quant.quantize_dynamic_per_token(x, "e4m3fn", scale_ub=np.float32("nan"))
    with pytest.raises(ValueError, match="scale_ub must be a positive float32.*-1.0"):
        quant.quantize_dynamic_per_token(x, "e4m3fn", scale_ub=-1.0)
    with pytest.raises(ValueError, match=r"scale_ub must have numel 1, got shape \(2,\)"):
        quant.quantize_dynamic_per_token(x, "e4m3fn", scale_ub=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="scale_ub must hold float32 values"):
        quant.quantize_dynamic_per_token(x, "e4m3fn", scale_ub=0.1)


def test_outputs_are_fresh_arrays_of_the_right_types():
    x = np.ones((3, 200), dtype=np.float32)
    codes, scales = quant.quantize_group(x, "e4m3fn", 128)
    assert codes.dtype == np.uint8 and codes.shape == (3, 200) and codes.flags.c_contiguous
    assert scales.dtype == np.float32 and scales.shape == (3, 2)
    codes, scales = quant.quantize_block(x, "e5m2", (128, 128))
    assert codes.shape == (3, 200) and scales.shape == (1, 2)
    assert quant.quantize_static(x, 1.0, "e4m3fn").dtype == np.uint8
    assert not math.isnan(float(quant.min_scaling_factor("e5m2")))
