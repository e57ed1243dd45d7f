"""CPU *contract emulation* of vllm-xpu-kernels' ``torch.ops._xpu_C`` FP8 GEMM ops.

This is not XPU hardware and not oneDNN. :func:`install` registers CPU implementations under
the real op names and schemas so that vLLM's XPU kernel classes (and ``kernel.xpu_ops``) can
run on a machine without an Intel GPU. Each call

1. checks the op's input contract strictly: every ``TORCH_CHECK`` of the real op, plus the
   cases where the real op checks nothing and would read out of bounds or silently misread
   (then the message says so). Every violation raises :class:`XpuContractError`, naming the
   argument, quoting the real check's text and showing what was passed;
2. takes the route the real op takes (per-tensor / per-token / per-channel / block scales);
3. returns the exact, correctly rounded result (``golden.matmul.grouped_mm_exact``), a
   contiguous tensor of the output dtype. A real XPU result differs by its accumulation
   error; the emulation shows what the op is *asked* to compute, never how XPU computes it.

Sources (``docs/vllm-0.33-notes.md`` §6, repository ``vllm-project/vllm-xpu-kernels``):

- schemas: ``csrc/xpu/torch_bindings.cpp``, newest stored variant (read_file id 66429270429);
- checks of ``fp8_gemm`` / ``fp8_gemm_out`` / ``fp8_bmm`` / ``fp8_gemm_w8a16`` and
  ``check_and_create_output_tensor``: ``csrc/xpu/onednn/onednn_matmul.cpp`` (id 68889429666,
  the variant with the contiguity checks);
- fp8 routing: ``csrc/xpu/onednn/fp8_gemm_w8a8.h`` (commit 09c5374b, id 60098218710);
- weight-only routing: ``csrc/xpu/onednn/fp8_gemm_w8a16.h`` (commit 07f4fbd6, id 60088729126),
  the post-#440 rule ``is_block = B_scale.dim() == 2 and B_scale.size(0) > 1``; the decode-GEMV
  variant (id 55117536487) is not emulated;
- bias routing ``get_bias_type``: ``csrc/xpu/onednn/onednn_ext.h`` (id 39893396696).

Every call appends a dict to :data:`CALLS` (see :func:`_record`).
"""

from __future__ import annotations

import numpy as np
import torch

from golden.codecs import decode
from golden.matmul import grouped_mm_exact

__all__ = ["install", "installed", "CALLS", "clear_calls", "LABEL", "XpuContractError", "SCHEMAS"]

LABEL = "emulated: vllm-xpu-kernels op contract on CPU (not XPU hardware)"

SCHEMAS = {
    "fp8_gemm": "fp8_gemm(Tensor A, Tensor B, ScalarType? out_dtype, Tensor? A_scale_, "
                "Tensor? B_scale_, Tensor? bias_) -> Tensor",
    "fp8_gemm_out": "fp8_gemm_out(Tensor(a!) out, Tensor A, Tensor B, ScalarType? out_dtype, "
                    "Tensor? A_scale_, Tensor? B_scale_, Tensor? bias_) -> Tensor",
    "fp8_bmm": "fp8_bmm(Tensor A, Tensor B, ScalarType? out_dtype, Tensor? A_scale_, "
               "Tensor? B_scale_, Tensor? bias_) -> Tensor",
    "fp8_gemm_w8a16": "fp8_gemm_w8a16(Tensor A, Tensor B, Tensor? B_scale_, Tensor? bias_) -> Tensor",
}

CALLS: list[dict] = []

_FP8 = {torch.float8_e4m3fn: "e4m3fn", torch.float8_e5m2: "e5m2"}
_HALF = {torch.float16: "fp16", torch.bfloat16: "bf16"}  # fp8 outputs; w8a16 activations
_BIAS_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_OOB = "the real op does not check this and would read out of bounds or misread"
_LIB = None  # the torch.library.Library; must stay alive or the ops are deregistered


class XpuContractError(RuntimeError):
    """An input the real ``_xpu_C`` op rejects, or would read out of bounds / misread."""


def clear_calls() -> None:
    CALLS.clear()


def installed() -> bool:
    return _LIB is not None


def install() -> None:
    """Define the ``_xpu_C`` ops with CPU implementations (idempotent).

    Raises RuntimeError if any of the op names already exists and was not defined here (the
    real vllm_xpu_kernels is loaded, or someone else registered them): never shadow them."""
    global _LIB
    if _LIB is not None:
        return
    taken = [name for name in SCHEMAS if hasattr(torch.ops._xpu_C, name)]
    if taken:
        raise RuntimeError(
            f"kernel.xpu_emulation refuses to shadow the real op torch.ops._xpu_C.{taken[0]}: "
            "it is already defined (by vllm_xpu_kernels or another registration); "
            "the CPU contract emulation was not installed")
    try:
        lib = torch.library.Library("_xpu_C", "DEF")
    except RuntimeError:  # the namespace exists (other ops in it): add ours as a fragment
        lib = torch.library.Library("_xpu_C", "FRAGMENT")
    for name, schema in SCHEMAS.items():
        lib.define(schema)
        lib.impl(name, _recorded(name, _IMPLS[name]), "CPU")
    _LIB = lib


# --- messages and the call log ---------------------------------------------------------------


def _desc(t) -> str:
    if t is None:
        return "None"
    return f"shape {list(t.shape)} stride {list(t.stride())} dtype {_dt(t.dtype)}"


def _dt(dtype) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _err(arg: str, what: str, real: str | None = None) -> XpuContractError:
    """``arg: what [real op: "TORCH_CHECK text"]``."""
    return XpuContractError(f"{arg}: {what}" + (f' [real op: "{real}"]' if real else ""))


def _recorded(op: str, fn):
    """The CPU kernel: log the call in CALLS, run ``fn``, prefix errors with the op name."""

    def kernel(*args):
        rec = {"op": op, "route": None, "a_route": None, "b_route": None, "b_layout": None,
               "bias_kind": None}
        CALLS.append(rec)
        try:
            return fn(rec, *args)
        except XpuContractError as exc:
            rec["error"] = f"_xpu_C.{op}: {exc}"
            raise XpuContractError(rec["error"]) from None

    return kernel


def _record(rec: dict, A, B, A_scale, B_scale, bias, out_dtype) -> None:
    """Fill a CALLS entry: ``op``, ``route`` ("<a_route>/<b_route>"), ``a_route`` (per-tensor,
    per-token, block, or unquantized for w8a16), ``b_route`` (per-tensor, per-channel, block),
    ``a_shape``/``a_stride``/``a_dtype``, the same for ``b_``, ``b_layout`` ("nt": [K,N]
    column-major, "nn": row-major), ``a_scale_shape``, ``b_scale_shape``, ``bias_shape`` (None
    when not passed), ``bias_kind`` (get_bias_type's none/scalar/n/m/mn), ``out_dtype``;
    dtypes as strings ("bfloat16"). A rejected call also gets ``error``."""
    shape = lambda t: None if t is None else tuple(t.shape)  # noqa: E731
    rec.update(a_shape=shape(A), a_stride=tuple(A.stride()), a_dtype=_dt(A.dtype),
               b_shape=shape(B), b_stride=tuple(B.stride()), b_dtype=_dt(B.dtype),
               a_scale_shape=shape(A_scale), b_scale_shape=shape(B_scale),
               bias_shape=shape(bias), out_dtype=_dt(out_dtype))


def _routes(rec: dict, a_route: str, b_route: str) -> None:
    rec.update(a_route=a_route, b_route=b_route, route=f"{a_route}/{b_route}")


# --- shared contract pieces ------------------------------------------------------------------


def _check_w8a8_dtypes(rec: dict, A, B, A_scale, B_scale, out_dtype):
    """fp8_gemm / fp8_bmm: A and B one FP8 type, fp16/bf16 output (default fp16), f32 scales.
    Returns the output dtype."""
    out_dtype = torch.float16 if out_dtype is None else out_dtype
    if A.dtype not in _FP8 or B.dtype != A.dtype:
        raise _err("A, B", f"A dtype {_dt(A.dtype)}, B dtype {_dt(B.dtype)}",
                   "input and weight must be f8_e5m2 or f8_e4m3fn for fp8 matmul")
    if out_dtype not in _HALF:
        raise _err("out_dtype", f"got {_dt(out_dtype)}",
                   "output must be float16 or bfloat16 for fp8 matmul")
    rec["out_dtype"] = _dt(out_dtype)
    _check_scale_dtype(A_scale, "A_scale")
    _check_scale_dtype(B_scale, "B_scale")
    return out_dtype


def _check_contiguous(**tensors) -> None:
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise _err(name, f"must be contiguous, got {_desc(t)}",
                       f"{name} must be contiguous for fp8 matmul")


def _result_shape(A, B) -> tuple:
    """``check_and_create_output_tensor``: dims, batch, and the result shape."""
    if A.dim() not in (2, 3):
        raise _err("A", f"must be 2-D or 3-D, got {_desc(A)}",
                   "OneDNN Matmul only support 2D and 3D inputs!")
    if B.dim() not in (2, 3):
        raise _err("B", f"must be 2-D or 3-D, got {_desc(B)}",
                   "OneDNN Matmul only support 2D and 3D weights!")
    if B.dim() == 3 and A.dim() != 3:
        raise _err("A", f"must be 3-D with a 3-D B; A {_desc(A)}, B {_desc(B)}",
                   "OneDNN Matmul expects 3D input when using batched weights!")
    if B.dim() == 3 and A.size(0) != B.size(0):
        raise _err("B", f"batch {B.size(0)} != A's batch {A.size(0)}",
                   "OneDNN Matmul expects input and weight batches to match")
    return (*A.shape[:-1], B.size(-1))


def _check_rows(t, name: str) -> None:
    """The op addresses ``t`` as a row-major [rows, cols] matrix with unit column stride and
    one leading dimension: dim 0's stride for 2-D; for 3-D the smaller of strides 0 and 1
    (``leading_dim = stride0 < stride1 ? 0 : 1``). Rows must then be in logical order.
    An empty tensor is never read."""
    if t.numel() == 0:
        return
    if t.size(-1) > 1 and t.stride(-1) != 1:
        raise _err(name, f"must have unit stride in its last dim, got {_desc(t)}: {_OOB}")
    if t.dim() == 3:
        (d0, d1), (s0, s1) = t.shape[:2], t.stride()[:2]
        lda = s0 if s0 < s1 else s1
        if not ((d0 == 1 or s0 == d1 * lda) and (d1 == 1 or s1 == lda)):
            raise _err(name, f"rows are not at multiples of one leading dimension (lda={lda}) in "
                             f"logical order, got {_desc(t)}: {_OOB}")


def _b_layout(B) -> str:
    """``is_nt = B.stride(-2) == 1``; otherwise the op assumes B.stride(-1) == 1."""
    if B.stride(-2) == 1:
        return "nt"
    if B.stride(-1) == 1 or B.numel() == 0:
        return "nn"
    raise _err("B", f"[K,N] must be row-major (stride(-1)==1) or column-major (stride(-2)==1), "
                    f"got {_desc(B)}: {_OOB}")


def _check_k(A, B) -> None:
    if A.size(-1) != B.size(-2):
        raise _err("B", f"K mismatch: A.size(-1)={A.size(-1)} but B.size(-2)={B.size(-2)} "
                        f"(A {_desc(A)}, B {_desc(B)}); {_OOB}")


def _bias(bias, m: int, n: int) -> tuple[str, np.ndarray | None]:
    """``get_bias_type``: the first matching row wins; values as float64 broadcastable to
    [m, n]. ``torch.Tensor()`` (numel 0) is no bias."""
    if bias is None:
        return "none", None
    if bias.dtype not in _BIAS_DTYPES:
        raise _err("bias", f"dtype must be float32, bfloat16 or float16, got {_desc(bias)}",
                   "Unsupported data type for bias in int4 matmul")
    numel, last = bias.numel(), (bias.size(-1) if bias.dim() else 1)
    table = (("scalar", numel == 1, (1, 1)), ("mn", numel == m * n, (m, n)),
             ("n", last == n and numel == n, (1, n)), ("m", last == 1 and numel == m, (m, 1)),
             ("none", numel == 0, None))
    for kind, match, shape in table:
        if match:
            return kind, (None if shape is None else bias.double().numpy().reshape(shape))
    raise _err("bias", f"{_desc(bias)} is none of: numel 0, scalar, [M,N], [N], [M,1] "
                       f"with M={m}, N={n}", "unsupported bias dim in matmul")


def _check_scale_dtype(s, name: str, dtypes=(torch.float32,),
                       why="the float32 scales of the op's fp8 joint dtypes") -> None:
    """The real op hands the scale's dtype to oneDNN unchecked; the emulation accepts only
    the dtypes vLLM passes."""
    if s is not None and s.dtype not in dtypes:
        raise _err(name, f"dtype must be {' or '.join(_dt(d) for d in dtypes)} ({why}; an "
                         f"emulation restriction), got {_desc(s)}")


def _per_channel(s, n: int, name: str) -> np.ndarray:
    """Mask ``1 << 1``: the op reads N values in memory order, whatever the shape."""
    if s.numel() != n:
        raise _err(name, f"takes the per-channel route (numel != 1) and the op reads N={n} "
                         f"values, but it has {s.numel()} ({_desc(s)}); {_OOB}")
    if sum(d > 1 for d in s.shape) > 1:
        raise _err(name, f"{_desc(s)} has N={n} values but more than one dim > 1: the op reads "
                         "it as a per-channel [N] scale, not the block scale its shape suggests "
                         "(silent misread)")
    return s.float().numpy().reshape(1, n)


def _fp8_vals(t) -> np.ndarray:
    """float64 values of a 2-D FP8 tensor in its logical order (any strides)."""
    return decode(t.view(torch.uint8).numpy(), _FP8[t.dtype])


def _golden(a, fmt_a, b, fmt_b, sa, sb, group_k: int, bias, out_fmt) -> np.ndarray:
    """The exact, correctly rounded result (``golden.matmul.grouped_mm_exact``)."""
    return grouped_mm_exact(a, fmt_a, b, fmt_b, sa, sb, group_k, bias, out_fmt)


def _to_torch(y: np.ndarray, dtype, shape) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(y)).to(dtype)
    back = t.double().numpy()
    assert np.array_equal(back, y, equal_nan=True), "output cast from float64 was not exact"
    return t.reshape(shape)


# --- fp8_gemm / fp8_gemm_out -----------------------------------------------------------------


def _w8a8_scales(rec, A_scale, B_scale, m: int, k: int, n: int):
    """``dnnl_matmul_w8a8_fp8`` routing: (scale_a [M,G]-broadcastable, scale_b
    [G,N]-broadcastable, group_k)."""
    As = torch.ones(1) if A_scale is None else A_scale
    Bs = torch.ones(1) if B_scale is None else B_scale
    if As.dim() == 2 and As.size(1) > 1:  # is_block_quant
        if Bs.dim() != 2:
            raise _err("B_scale", f"must be 2-D [K/bk, N/bn] on the block route (A_scale "
                                  f"{_desc(As)}), got {_desc(Bs)}")
        if As.size(1) != Bs.size(0):
            raise _err("A_scale", f"{As.size(1)} groups vs B_scale.size(0)={Bs.size(0)} "
                                  f"(A_scale {_desc(As)}, B_scale {_desc(Bs)})",
                       "Mismatch group size in input and weight.")
        if k % Bs.size(0) or n % Bs.size(1):
            raise _err("B_scale", f"{_desc(Bs)} does not divide [K, N]=[{k}, {n}]",
                       "Weight block scale dims must divide [K, N]")
        if As.size(0) != m:
            raise _err("A_scale", f"block route reads {m} rows x {As.size(1)} groups but got "
                                  f"{_desc(As)}; {_OOB}")
        _routes(rec, "block", "block")
        sb = np.repeat(Bs.numpy(), n // Bs.size(1), axis=1)
        return As.numpy(), sb, k // Bs.size(0)
    if As.numel() == 1:
        a_route, sa = "per-tensor", As.numpy().reshape(1, 1)
    elif As.numel() == m:
        a_route, sa = "per-token", As.numpy().reshape(m, 1)
    else:
        raise _err("A_scale", f"takes the per-token route (numel != 1, not a 2-D [M, G>1] block "
                              f"scale) and the op reads M={m} values, but got {_desc(As)}; {_OOB}")
    if Bs.numel() == 1:
        b_route, sb = "per-tensor", Bs.numpy().reshape(1, 1)
    else:
        b_route, sb = "per-channel", _per_channel(Bs, n, "B_scale")
    _routes(rec, a_route, b_route)
    return sa, sb, max(k, 1)


def _fp8_gemm(rec, A, B, out_dtype, A_scale, B_scale, bias, out=None):
    _record(rec, A, B, A_scale, B_scale, bias, out_dtype if out is None else out.dtype)
    _check_contiguous(A_scale=A_scale, B_scale=B_scale, bias=bias)
    shape = _result_shape(A, B)
    if out is not None:
        if tuple(out.shape) != shape:
            raise _err("out", f"must have shape {list(shape)}, got {_desc(out)}",
                       "OneDNN Matmul expects out of shape")
        if out_dtype is not None and out.dtype != out_dtype:
            raise _err("out", f"dtype {_dt(out.dtype)} != out_dtype {_dt(out_dtype)}",
                       "OneDNN Matmul expects out of dtype")
        _check_rows(out, "out")
        out_dtype = out.dtype
    out_dtype = _check_w8a8_dtypes(rec, A, B, A_scale, B_scale, out_dtype)
    _check_rows(A, "A")
    rec["b_layout"] = _b_layout(B)
    _check_k(A, B)
    if B.dim() == 3 and B.size(0) != 1:
        raise _err("B", f"is batched {_desc(B)}: fp8_gemm builds one 2-D oneDNN matmul over "
                        "m = prod(A.shape[:-1]) rows and reads only B[0] (silent misread); "
                        "use fp8_bmm")
    m, k, n = int(np.prod(A.shape[:-1])), A.size(-1), B.size(-1)
    sa, sb, group_k = _w8a8_scales(rec, A_scale, B_scale, m, k, n)
    rec["bias_kind"], c = _bias(bias, m, n)
    b2 = B[0] if B.dim() == 3 else B
    y = _golden(_fp8_vals(A.reshape(m, k)), _FP8[A.dtype], _fp8_vals(b2), _FP8[B.dtype],
                         sa, sb, group_k, c, _HALF[out_dtype])
    result = _to_torch(y, out_dtype, shape)
    return result if out is None else out.copy_(result)


def _fp8_gemm_out(rec, out, A, B, out_dtype, A_scale, B_scale, bias):
    return _fp8_gemm(rec, A, B, out_dtype, A_scale, B_scale, bias, out=out)


# --- fp8_bmm ---------------------------------------------------------------------------------


def _bmm_scales(rec, A_scale, B_scale, batch: int, m: int, k: int, n: int):
    """``dnnl_batch_matmul_w8a8_fp8`` routing: per-batch lists of scale_a, scale_b, group_k."""
    As = torch.ones(1) if A_scale is None else A_scale
    Bs = torch.ones(1) if B_scale is None else B_scale
    a_gk = b_gk = k
    if As.numel() == 1:
        a_route, sa = "per-tensor", [As.numpy().reshape(1, 1)] * batch
    elif As.dim() == 2 and tuple(As.shape) == (batch, m):
        a_route, sa = "per-token", list(As.numpy().reshape(batch, m, 1))
    elif As.dim() == 3 and tuple(As.shape[:2]) == (batch, m) and k % As.size(2) == 0:
        a_route, sa, a_gk = "block", list(As.numpy()), k // As.size(2)
    else:
        raise _err("A_scale", f"must have numel 1, shape [B, M]=[{batch}, {m}] or [B, M, gK] with "
                              f"gK dividing K={k}; got {_desc(As)}",
                   "Batched src per-token scale expects shape [B, M] / Batched src grouped scale "
                   "expects shape [B, M, gK] / Unsupported batched src scale rank for fp8 matmul")
    if Bs.numel() == 1:
        b_route, sb = "per-tensor", [Bs.numpy().reshape(1, 1)] * batch
    elif (Bs.dim() == 1 and batch == 1 and Bs.size(0) == n) or (
            Bs.dim() == 2 and tuple(Bs.shape) == (batch, n)):
        b_route, sb = "per-channel", list(Bs.numpy().reshape(batch, 1, n))
    elif (Bs.dim() == 3 and Bs.size(0) == batch and Bs.size(1) >= 1 and Bs.size(2) >= 1
          and k % Bs.size(1) == 0 and n % Bs.size(2) == 0):
        b_route, b_gk = "block", k // Bs.size(1)
        sb = list(np.repeat(Bs.numpy(), n // Bs.size(2), axis=2))
    else:
        raise _err("B_scale", f"must have numel 1, shape [N]={[n]} (batch 1), [B, N]="
                              f"{[batch, n]} or [B, gK, gN] dividing [K, N]=[{k}, {n}]; "
                              f"got {_desc(Bs)}",
                   "Batched weight per-channel scale expects shape [B, N] / Batched weight block "
                   "scale dims must divide [K, N] / Unsupported batched weight scale rank")
    if a_gk != k and b_gk != k and a_gk != b_gk:
        raise _err("A_scale", f"K-group size {a_gk} differs from B_scale's {b_gk}: what oneDNN "
                              "does with two different K groupings is not emulated")
    _routes(rec, a_route, b_route)
    return sa, sb, max(min(a_gk, b_gk), 1)


def _fp8_bmm(rec, A, B, out_dtype, A_scale, B_scale, bias):
    _record(rec, A, B, A_scale, B_scale, bias, out_dtype)
    if A.dim() != 3:
        raise _err("A", f"must be 3-D, got {_desc(A)}", "fp8_bmm expects A to be a 3D tensor")
    if B.dim() != 3:
        raise _err("B", f"must be 3-D, got {_desc(B)}", "fp8_bmm expects B to be a 3D tensor")
    _check_contiguous(A_scale=A_scale, B_scale=B_scale)
    shape = _result_shape(A, B)
    out_dtype = _check_w8a8_dtypes(rec, A, B, A_scale, B_scale, out_dtype)
    if bias is not None and not bias.is_contiguous():
        raise _err("bias", f"is not contiguous ({_desc(bias)}): fp8_bmm has no bias contiguity "
                           f"check and oneDNN reads it densely; {_OOB}")
    _check_rows(A, "A")
    rec["b_layout"] = _b_layout(B)
    _check_k(A, B)
    batch, m, k, n = A.size(0), A.size(1), A.size(2), B.size(-1)
    kind, c = _bias(bias, batch * m, n)
    rec["bias_kind"] = kind
    if kind not in ("none", "scalar", "n"):
        raise _err("bias", f"{_desc(bias)} is read as {kind!r} bias for M*B={batch * m}, N={n}",
                   "Batched fp8 matmul only supports empty, scalar, or [N] bias.")
    sa, sb, group_k = _bmm_scales(rec, A_scale, B_scale, batch, m, k, n)
    fmt, out_fmt = _FP8[A.dtype], _HALF[out_dtype]
    ys = [_golden(_fp8_vals(A[i]), fmt, _fp8_vals(B[i]), fmt, sa[i], sb[i], group_k,
                           c, out_fmt) for i in range(batch)]
    return _to_torch(np.stack(ys) if ys else np.zeros(shape), out_dtype, shape)


# --- fp8_gemm_w8a16 --------------------------------------------------------------------------


def _w8a16_scale(rec, B_scale, k: int, n: int):
    """``dnnl_matmul_w8a16_fp8`` routing (post-#440): (scale_b [G,N]-broadcastable, group_k)."""
    Bs = torch.ones(1) if B_scale is None else B_scale
    if Bs.dim() == 2 and Bs.size(0) > 1:  # is_block_quant
        if k % Bs.size(0) or n % Bs.size(1):
            raise _err("B_scale", f"{_desc(Bs)} takes the block route (2-D, size(0) > 1) and does "
                                  f"not divide [K, N]=[{k}, {n}] (a per-channel scale must be "
                                  "[1,N] or [N]; [N,1] is read as a block scale, "
                                  "vllm-xpu-kernels #440)",
                       "Weight block scale dims must divide [K, N]")
        blk = k // Bs.size(0)  # used for BOTH dims: groups {blk, blk}
        if Bs.size(1) * blk != n:
            reads = (f"(K/blk)*(N/blk) = {k // blk}*{n // blk} = {(k // blk) * (n // blk)}"
                     if n % blk == 0 else f"(K/blk)*(N/blk) with N={n} not a multiple of blk")
            raise _err("B_scale", f"{_desc(Bs)} takes the block route (2-D, size(0) > 1); the op "
                                  f"uses blk = K/size(0) = {blk} for both dims and reads {reads} "
                                  f"scale values from a tensor of {Bs.numel()}: out of bounds or "
                                  "silently misread (real op: no check). An [N,1] per-channel "
                                  "scale is read as a block scale (vllm-xpu-kernels #440); pass "
                                  "[1,N] or [N] for per-channel")
        _routes(rec, "unquantized", "block")
        return np.repeat(Bs.float().numpy(), blk, axis=1), blk
    if Bs.numel() == 1:
        _routes(rec, "unquantized", "per-tensor")
        return Bs.float().numpy().reshape(1, 1), max(k, 1)
    sb = _per_channel(Bs, n, "B_scale")
    _routes(rec, "unquantized", "per-channel")
    return sb, max(k, 1)


def _fp8_gemm_w8a16(rec, A, B, B_scale, bias):
    _record(rec, A, B, None, B_scale, bias, A.dtype)
    _check_contiguous(B_scale=B_scale, bias=bias)
    shape = _result_shape(A, B)
    if B.dtype not in _FP8:
        raise _err("B", f"dtype {_dt(B.dtype)}", "weight must be f8_e5m2 or f8_e4m3fn for fp8 matmul")
    if A.dtype not in _HALF:
        raise _err("A", f"dtype must be float16 or bfloat16 (the output dtype is A's), got "
                        f"{_desc(A)}", "Unsupported data type for fp8 matmul")
    _check_scale_dtype(B_scale, "B_scale", (torch.float32, torch.bfloat16, torch.float16),
                       "vLLM passes float32; the op's default is ones in A's dtype")
    _check_rows(A, "A")
    rec["b_layout"] = _b_layout(B)
    _check_k(A, B)
    if B.dim() == 3 and B.size(0) != 1:
        raise _err("B", f"is batched {_desc(B)}: fp8_gemm_w8a16 builds one 2-D oneDNN matmul and "
                        "reads only B[0] (silent misread)")
    m, k, n = int(np.prod(A.shape[:-1])), A.size(-1), B.size(-1)
    sb, group_k = _w8a16_scale(rec, B_scale, k, n)
    rec["bias_kind"], c = _bias(bias, m, n)
    a = A.reshape(m, k).double().numpy()
    b2 = B[0] if B.dim() == 3 else B
    y = _golden(a, _HALF[A.dtype], _fp8_vals(b2), _FP8[B.dtype], np.ones((1, 1)), sb,
                         group_k, c, _HALF[A.dtype])
    return _to_torch(y, A.dtype, shape)


_IMPLS = {"fp8_gemm": _fp8_gemm, "fp8_gemm_out": _fp8_gemm_out, "fp8_bmm": _fp8_bmm,
          "fp8_gemm_w8a16": _fp8_gemm_w8a16}
