"""vLLM's native FP8 quantization convention, reproduced bit for bit in NumPy.

The reference is ``QuantFP8.forward_native`` and ``QuantFP8._quantize_group_native`` in vLLM's
``vllm/model_executor/layers/quantization/input_quant_fp8.py``, run by torch on the CPU:

per-tensor / per-token (static or dynamic), and per-channel weights::

    amax  = x.abs().max(dim=-1)            # in the input dtype (exact), then .to(float32)
    amax  = amax.clamp(max=scale_ub)       # dynamic per-token only, when scale_ub is given
    scale = (amax / FP8_MAX).clamp(min=FP8_MIN_SCALING_FACTOR)            # float32
    q     = fp8((x.to(float32) * scale.reciprocal()).clamp(-FP8_MAX, FP8_MAX))

group (1 x g) activations and (bn x bk) weight blocks, zero-padded to whole groups::

    scale = amax / FP8_MAX                                                # float32
    scale = exp2(ceil(log2(scale)))        # only with use_ue8m0
    scale = scale.clamp(min=FP8_MIN_SCALING_FACTOR)
    q     = fp8((x / scale).clamp(-FP8_MAX, FP8_MAX))                     # a DIVISION

Every float32 operation is one IEEE rounding (torch's CPU division, reciprocal and product are
correctly rounded, checked in tests/test_quant.py), so it is done here with ``np.float32``
arrays; the final cast is one round-to-nearest-even from float32, done by
:func:`golden.codecs.encode` (the clamp keeps overflow away from it, so its overflow mode never
matters). NaN and inf inputs flow through exactly as in torch: NaN propagates through ``max``,
``clamp`` and the arithmetic; an inf makes its amax and scale inf, the reciprocal 0 and
``inf * 0`` NaN.

Places where vLLM's torch arithmetic differs from a "natural" NumPy port:

* ``FP8_MIN_SCALING_FACTOR`` is the Python double ``1 / (FP8_MAX * 512)``, but ``clamp`` on a
  float32 tensor applies it rounded to float32 (RNE): for e4m3fn 4.359654212748865e-06, not
  4.359654017857143e-06. :func:`min_scaling_factor` returns the value actually applied.
* UE8M0 rounding is ``exp2(ceil(log2(s)))`` in float32, not an exact "next power of two":
  for ``s = 2**n * (1 + 2**-23)`` (one ulp above a power of two), ``log2(s) = n + 1.7e-7``
  rounds to exactly ``n`` in float32 when ``n >= 4`` or ``n <= -5``, so the scale becomes
  ``2**n < s`` (and the group's largest value then reaches the clamp). The emulation computes
  ``log2`` in float64 and rounds it to float32 (correct rounding). torch 2.13's CPU ``log2``
  (AVX2 and DEFAULT kernels alike) is only faithful: measured, it differs by 1 ulp from the
  correctly rounded float32 for 112,079 of the 2**31 - 2**23 positive finite float32 inputs
  (44,655 of them in [2**-18, 2**10)), yet an exhaustive sweep found ``ceil`` of the two
  equal for every one of those inputs, so UE8M0 scales agree bit for bit.
* Per-token and per-group scales for an activation with more than two dimensions are those of
  its rows (all leading dimensions flattened), which is what vLLM's linear layers compute (they
  quantize ``input.view(-1, K)``). ``forward_native`` itself, given a 3-D ``x`` and per-token
  scales, broadcasts the [B, M, 1] scale with ``group_broadcast(scale, x.shape[-2:])``, which
  aligns the scale's dimensions with the wrong ones of x and raises for most shapes.
* ``FP8_MAX`` is 224 for e4m3fnuz (vLLM's ROCm choice, not finfo's 240); for the other formats
  it is the format's largest finite value (e5m2fnuz: 57344; vLLM never quantizes to it).
* The block-wise weight quantizer here is the brief's "group rule on 2-D blocks" (division,
  ``FP8_MIN_SCALING_FACTOR`` clamp). DeepGEMM-style ``per_block_cast_to_fp8`` helpers instead
  clamp amax at 1e-4 and multiply by ``448 / amax`` or ``1 / scale`` without a clamp before the
  (saturating) cast; those are a different convention.
"""

from __future__ import annotations

import numbers

import numpy as np

from .codecs import encode, round_to_format
from .formats import FP8_FORMATS, FloatFormat, get_format

__all__ = [
    "IN_DTYPES",
    "fp8_max",
    "min_scaling_factor",
    "quantize_static",
    "quantize_dynamic_per_tensor",
    "quantize_dynamic_per_token",
    "quantize_weight_per_channel",
    "quantize_weight_per_tensor",
    "quantize_group",
    "quantize_block",
]

IN_DTYPES = ("bf16", "fp16", "fp32")
"""Input dtypes an activation or weight may come in (values must be representable in it)."""

_FNUZ_E4M3_MAX = 224.0  # vLLM's get_fp8_min_max() on fnuz platforms


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------


def _fp8_format(fmt) -> FloatFormat:
    try:
        f = get_format(fmt)
    except ValueError:
        raise ValueError(f"fmt={fmt!r} is not a known format; FP8 formats: {FP8_FORMATS}") from None
    if f.name not in FP8_FORMATS:
        raise ValueError(f"fmt={fmt!r} is not an FP8 format; expected one of {FP8_FORMATS}")
    return f


def _check_in_dtype(in_dtype) -> str | None:
    if in_dtype is None:
        return None
    try:
        name = get_format(in_dtype).name
    except ValueError:
        name = None
    if name not in IN_DTYPES:
        raise ValueError(f"in_dtype={in_dtype!r} is not one of {IN_DTYPES}")
    return name


def _as_input(x, name: str, in_dtype, ndim: tuple[int, int | None]) -> np.ndarray:
    """``x`` as float64, checked: floating dtype, ndim in range, values representable.

    Values must be representable in ``in_dtype`` (float32 when not given), since vLLM's input is
    a bf16/fp16/fp32 tensor and the quantizer starts from its exact values.
    """
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    lo, hi = ndim
    if arr.ndim < lo or (hi is not None and arr.ndim > hi):
        want = f"exactly {lo}" if hi == lo else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        raise ValueError(f"{name} must have {want} dimensions, got shape {arr.shape}")
    x64 = arr.astype(np.float64)
    fmt = _check_in_dtype(in_dtype) or "fp32"
    if arr.dtype != np.float32 or fmt != "fp32":
        r = round_to_format(x64, fmt)
        bad = ~((r == x64) | (np.isnan(r) & np.isnan(x64)))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}{list(idx)} = {float(x64[idx])!r} is not exactly representable in {fmt}"
            )
    return x64


def _nonempty_last(x64: np.ndarray, name: str) -> None:
    if x64.shape[-1] == 0:
        raise ValueError(f"{name} has an empty last dimension (shape {x64.shape}): amax is undefined")


def _as_float32_array(v, name: str) -> np.ndarray:
    arr = np.asarray(v)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array, got dtype {arr.dtype}")
    a64 = arr.astype(np.float64)
    a32 = a64.astype(np.float32)
    bad = ~((a32.astype(np.float64) == a64) | (np.isnan(a64)))
    if bad.any():
        val = float(a64[tuple(np.argwhere(bad)[0])] if a64.ndim else a64[()])
        raise ValueError(f"{name} must hold float32 values (vLLM scales are float32); {val!r} is not one")
    return a32


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _block_shape(block) -> tuple[int, int]:
    try:
        bn, bk = block
    except (TypeError, ValueError):
        raise ValueError(f"block must be a pair (block_n, block_k), got {block!r}") from None
    return _positive_int(bn, "block[0]"), _positive_int(bk, "block[1]")


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------


def fp8_max(fmt) -> float:
    """vLLM's ``_FP8_MAX`` for ``fmt``: 224 for e4m3fnuz, else the format's largest finite value."""
    f = _fp8_format(fmt)
    return _FNUZ_E4M3_MAX if f.name == "e4m3fnuz" else float(f.max)


def min_scaling_factor(fmt) -> np.float32:
    """``1 / (fp8_max * 512)`` as ``clamp`` applies it to a float32 tensor: rounded to float32."""
    return np.float32(1.0 / (fp8_max(fmt) * 512.0))


# ---------------------------------------------------------------------------------------------
# the float32 pipeline
# ---------------------------------------------------------------------------------------------


def _scale_from_amax(amax32: np.ndarray, fmt: FloatFormat, ue8m0: bool = False) -> np.ndarray:
    """``(amax / FP8_MAX)`` [-> ``exp2(ceil(log2(.)))``] ``.clamp(min=MIN_SCALING_FACTOR)``."""
    with np.errstate(all="ignore"):
        s = amax32 / np.float32(fp8_max(fmt))  # float32 / float32: one rounding
        if ue8m0:
            # float32 log2, emulated as correctly rounded: float64 log2 rounded to float32.
            lg = np.log2(s.astype(np.float64)).astype(np.float32)
            # ceil is exact; exp2 of an integer is a power of two, exact in float64, and the
            # float32 cast rounds only where it leaves float32's range (inf / 0; subnormals
            # are powers of two down to 2**-149 and 2**-150 ties to 0).
            s = np.exp2(np.ceil(lg).astype(np.float64)).astype(np.float32)
        # clamp(min=...) propagates NaN, like np.maximum.
        return np.maximum(s, min_scaling_factor(fmt))


def _cast(v32: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``v.clamp(-FP8_MAX, FP8_MAX).to(fp8)`` for a float32 array (NaN stays NaN)."""
    m = np.float32(fp8_max(fmt))
    clamped = np.minimum(np.maximum(v32, -m), m)
    return encode(clamped.astype(np.float64), fmt, overflow="ieee")


def _quantize_reciprocal(x64: np.ndarray, scale32: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``x.to(float32) * scale.reciprocal()`` then clamp and cast (scale broadcasts)."""
    with np.errstate(all="ignore"):
        inv = np.float32(1.0) / scale32  # torch's float32 reciprocal is the IEEE quotient
        out = x64.astype(np.float32) * inv
    return _cast(out, fmt)


def _amax_last(x64: np.ndarray) -> np.ndarray:
    """``x.abs().max(dim=-1, keepdim=True).to(float32)``; exact, NaN-propagating."""
    return np.max(np.abs(x64), axis=-1, keepdims=True).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def quantize_static(x, scale, fmt, *, in_dtype=None) -> np.ndarray:
    """Codes of ``x`` quantized with a given float32 ``scale``.

    ``scale`` has one element (per-tensor; any shape, e.g. ``[]``, ``[1]``, ``[1, 1]``) or is a
    per-row column broadcastable to ``x`` with last dimension 1 (e.g. ``[M, 1]`` for ``x`` of
    shape ``[M, K]``). Zero, negative, inf and NaN scales are computed as torch would.
    """
    f = _fp8_format(fmt)
    x64 = _as_input(x, "x", in_dtype, (1, None))
    s32 = _as_float32_array(scale, "scale")
    if s32.size != 1:
        ok = s32.ndim >= 1 and s32.ndim <= x64.ndim and s32.shape[-1] == 1
        if ok:
            try:
                ok = np.broadcast_shapes(s32.shape, x64.shape) == x64.shape
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(
                f"scale must have numel 1 or a shape like [M, 1] broadcastable to x {x64.shape}; "
                f"got shape {s32.shape}"
            )
    else:
        s32 = s32.reshape(1)
    return _quantize_reciprocal(x64, s32, f)


def quantize_dynamic_per_tensor(x, fmt, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic per-tensor: one scale from the whole tensor's amax. Returns ``(codes, scale[1])``."""
    f = _fp8_format(fmt)
    x64 = _as_input(x, "x", in_dtype, (1, None))
    if x64.size == 0:
        raise ValueError(f"x is empty (shape {x64.shape}): amax is undefined")
    amax = np.max(np.abs(x64)).astype(np.float32).reshape(1)
    scale = _scale_from_amax(amax, f)
    return _quantize_reciprocal(x64, scale, f), scale


def quantize_dynamic_per_token(x, fmt, scale_ub=None, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic per-token: one scale per row (last dimension reduced). Returns
    ``(codes, scale[..., 1])``.

    ``scale_ub`` (a float32 number, positive, not NaN) bounds the row's amax before the scale
    is formed, as vLLM's ``x_max.clamp(max=scale_ub)``.
    """
    f = _fp8_format(fmt)
    x64 = _as_input(x, "x", in_dtype, (1, None))
    _nonempty_last(x64, "x")
    amax = _amax_last(x64)
    if scale_ub is not None:
        ub = _as_float32_array(scale_ub, "scale_ub")
        if ub.size != 1:
            raise ValueError(f"scale_ub must have numel 1, got shape {ub.shape}")
        ub = ub.reshape(())
        if np.isnan(ub) or not ub > 0:
            raise ValueError(f"scale_ub must be a positive float32 (inf allowed), got {float(ub)!r}")
        amax = np.minimum(amax, ub)  # clamp(max=...) keeps NaN, like np.minimum
    scale = _scale_from_amax(amax, f)
    return _quantize_reciprocal(x64, scale, f), scale


def quantize_weight_per_channel(w, fmt, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel weight quantization of ``w`` [N, K] (per-token rule over K).
    Returns ``(codes[N, K], scale[N, 1])``."""
    f = _fp8_format(fmt)
    w64 = _as_input(w, "w", in_dtype, (2, 2))
    _nonempty_last(w64, "w")
    scale = _scale_from_amax(_amax_last(w64), f)
    return _quantize_reciprocal(w64, scale, f), scale


def quantize_weight_per_tensor(w, fmt, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor weight quantization of ``w`` [N, K]. Returns ``(codes, scale[1])``."""
    _as_input(w, "w", in_dtype, (2, 2))
    return quantize_dynamic_per_tensor(w, fmt, in_dtype=in_dtype)


def quantize_group(x, fmt, group_size=128, ue8m0=False, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic per-token-group (1 x ``group_size``) quantization along the last dimension.

    The last dimension is zero-padded to whole groups. Returns ``(codes of x's shape,
    scales[..., G])`` with ``G = ceil(K / group_size)``.
    """
    f = _fp8_format(fmt)
    g = _positive_int(group_size, "group_size")
    x64 = _as_input(x, "x", in_dtype, (1, None))
    _nonempty_last(x64, "x")
    k = x64.shape[-1]
    ng = -(-k // g)
    pad = ng * g - k
    xp = np.pad(x64, [(0, 0)] * (x64.ndim - 1) + [(0, pad)]) if pad else x64
    xg = xp.reshape(x64.shape[:-1] + (ng, g))
    scales = _scale_from_amax(_amax_last(xg), f, bool(ue8m0))  # [..., G, 1]
    with np.errstate(all="ignore"):
        q32 = xg.astype(np.float32) / scales
    codes = _cast(q32, f).reshape(xp.shape)[..., :k]
    return np.ascontiguousarray(codes), scales[..., 0]


def quantize_block(w, fmt, block=(128, 128), ue8m0=False, *, in_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Block-wise (``block_n`` x ``block_k``) weight quantization of ``w`` [N, K], group rule.

    Both dimensions are zero-padded to whole blocks. Returns ``(codes[N, K],
    scales[ceil(N / block_n), ceil(K / block_k)])``.
    """
    f = _fp8_format(fmt)
    bn, bk = _block_shape(block)
    w64 = _as_input(w, "w", in_dtype, (2, 2))
    n, k = w64.shape
    if n == 0 or k == 0:
        raise ValueError(f"w is empty (shape {w64.shape}): amax is undefined")
    nb, kb = -(-n // bn), -(-k // bk)
    wp = np.pad(w64, [(0, nb * bn - n), (0, kb * bk - k)])
    wb = wp.reshape(nb, bn, kb, bk)
    amax = np.max(np.abs(wb), axis=(1, 3), keepdims=True).astype(np.float32)  # [nb, 1, kb, 1]
    scales = _scale_from_amax(amax, f, bool(ue8m0))
    with np.errstate(all="ignore"):
        q32 = wb.astype(np.float32) / scales
    codes = _cast(q32, f).reshape(wp.shape)[:n, :k]
    return np.ascontiguousarray(codes), scales.reshape(nb, kb)
