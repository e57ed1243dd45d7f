"""IPEX (intel-extension-for-pytorch) XPU FP8 GEMM: ``torch.ops.torch_ipex.fp8_gemm.Tensor``, op level.

Sources (repository ``intel/intel-extension-for-pytorch``, read through the search tools; the
tools do not say which release each stored version belongs to):

- ``csrc/gpu/aten/operators/fp8/FP8Linear.cpp`` (commit c315905051f0, read_file id 37495736826):
  ``IPEX_OP_REGISTER_DISPATCH("fp8_gemm.Tensor", fp8_gemm_v2, XPU)``. The macro
  (``csrc/gpu/utils/CustomOperatorRegistration.h``, id 37203829146) *infers* the schema from the
  C++ signature (``inferFunctionSchemaFromFunctor``), so there is no schema string and no
  defaults; the signature gives::

      torch_ipex::fp8_gemm.Tensor(Tensor A, bool trans_A, Tensor B, bool trans_B, Tensor? D,
          ScalarType out_dtype, Tensor? A_scale_inv, Tensor? B_scale_inv, Tensor? bias,
          bool accumulate) -> Tensor

  Another stored version (commit 3400b61de921, id 40924944259) appends ``int group_size``
  (used only when A is fp16/bf16, the weight-only route); the adapter passes 0 there.
  The same file also defines a Gaudi-style ``fp8_gemm_v2`` with a schema string, whose XPU
  kernel is a dummy (``at::empty``): not used. The older overload ``fp8_gemm.xpu`` (TE-style,
  format and meta indices) is an ``at::linear`` stand-in: not used.
- The kernel: with ``trans_B`` it calls ``B.transpose_(0, 1)`` (likewise ``A`` with
  ``trans_A``), an in-place change to the caller's tensor, then
  ``torch_ipex::xpu::oneDNN::fp8_matmul`` (``csrc/gpu/oneDNN/FP8_Matmul.h``, id 41305297085):
  both scales get a ``{1}`` memory descriptor and mask 0, so **only per-tensor scales**; a
  longer scale would be read as its first element, silently. The scales multiply the product
  (oneDNN ``DNNL_ARG_ATTR_SCALES``), so ``*_scale_inv`` are *dequantization* factors, the
  case's ``sa``/``sb``. A ``D`` tensor is rejected ("post-op ... working in progress").
  The Meta kernel allows out_dtype float32, bfloat16 and float16, and A/B of e5m2 or e4m3fn.
- IPEX's own test (Python, id 41017875126, ``test_fp8_linear_v2``) calls
  ``torch.ops.torch_ipex.fp8_gemm(input_fp8, False, weight_fp8, True, None, dtype,
  scale_in_inv, scale_wei_inv, bias, False)`` with an ``[N,K]`` weight and ``trans_B=True``,
  the same FP8 type for A and B, out dtype fp32/fp16/bf16, bias ``[N]`` in the out dtype, and
  ``scale_inv = 1/scale`` where ``cast_to_fp8`` multiplied by ``scale``, which confirms the
  dequantization reading.

Not used: ``torch_ipex.fp8_gemm_w8a16(input, weight, weight_transposed: bool, scales, bias)``,
the weight-only op old vLLM's ``XPUFp8LinearMethod`` calls (``ipex_quant.py``, id 135537490,
with an ``[N,K]`` weight, ``True`` and a per-tensor scale). Its activations are fp16/bf16, not
FP8 codes, so it cannot take an op case; its C++ registration was not found in the index.

The capability is conservative, only what the sources show: op level; e4m3fn x e4m3fn and
e5m2 x e5m2 (the test's pairs; mixed pairs pass the Meta check but were never shown to run);
outputs fp32/bf16/fp16; bias ``[N]`` of the output's dtype; per-tensor scales ``[]``/``[1]``;
B as ``[N,K]`` with ``trans_B=True`` (``nk``, the test's call) or ``[K,N]`` in either stride
order with ``trans_B=False`` (``kn``, ``kn-t``: the code's ``src{m,k}, wei{k,n}`` branch hands
B's strides to oneDNN); M > 0 (an m == 0 oneDNN primitive is unconfirmed here). Profile
"fp32": unmeasured, no XPU was available. No emulation exists for IPEX.
"""

from __future__ import annotations

from functools import lru_cache

from golden.cases import CaseData

from . import torch_inputs as ti
from .base import Adapter, Capability, KernelRun, Unsupported
from .registry import register
from .timing import timed_call
from .torch_inputs import require_torch

__all__ = ["IpexFp8GemmAdapter", "CAPABILITY"]

IPEX_MODULE = "intel_extension_for_pytorch"
_PER_TENSOR = ("[]", "[1]")
_TRANS_B = {"nk": True, "kn-t": False, "kn": False}  # [N,K] needs trans_B; [K,N] does not
# Inferred-schema argument counts of the stored versions -> the extra trailing arguments.
_EXTRA_ARGS = {10: (), 11: (0,)}  # 11: "int group_size" (weight-only route only)

CAPABILITY = Capability(
    levels=frozenset({"op"}),
    formats=frozenset({("e4m3fn", "e4m3fn"), ("e5m2", "e5m2")}),
    outs=frozenset({"bf16", "fp16", "fp32"}),
    biases=frozenset({None, "bf16", "fp16", "fp32"}),
    bias_out=frozenset({("bf16", "bf16"), ("fp16", "fp16"), ("fp32", "fp32")}),
    layouts=frozenset(_TRANS_B),
    scale_pairs=frozenset((sa, sb) for sa in _PER_TENSOR for sb in _PER_TENSOR),
    profile="fp32",  # unmeasured (no XPU here)
    rules=((lambda c: c.M > 0, "M == 0 not shown to work (oneDNN fp8_matmul with m == 0 unconfirmed)"),),
)


@lru_cache(maxsize=1)
def _missing() -> str | None:
    """Why IPEX's fp8_gemm cannot run here (None when it can)."""
    why = ti.xpu_module_missing(  # an ImportError, or IPEX refusing this torch version
        IPEX_MODULE, "install the XPU build of intel-extension-for-pytorch matching torch on an "
                     "Intel XPU machine (there is no CPU emulation for IPEX)")
    if why:
        return why
    torch = require_torch()
    try:
        n = len(torch.ops.torch_ipex.fp8_gemm.Tensor._schema.arguments)
    except (AttributeError, RuntimeError) as exc:
        return f"this IPEX build has no torch_ipex::fp8_gemm.Tensor overload ({exc})"
    if n not in _EXTRA_ARGS:
        return (f"torch_ipex::fp8_gemm.Tensor has {n} arguments, not one of the known schemas "
                f"({sorted(_EXTRA_ARGS)}; see kernel/ipex_ops.py): not guessing")
    return None


@register("ipex")
class IpexFp8GemmAdapter(Adapter):
    description = "torch.ops.torch_ipex.fp8_gemm.Tensor (intel-extension-for-pytorch, oneDNN)"

    def devices(self) -> list[str]:
        return [] if _missing() else ["xpu"]

    def why_unavailable(self, device: str) -> str | None:
        if device in self.devices():
            return None
        missing = _missing()
        if missing:
            return f"backend 'ipex': {missing}"
        return f"backend 'ipex' runs on 'xpu' only, not on {device!r}"

    def capability(self, device: str) -> Capability:
        return CAPABILITY

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        why = self.why_unavailable(device)
        if why:
            raise Unsupported(why)
        torch = require_torch()
        c = data.case
        op = torch.ops.torch_ipex.fp8_gemm.Tensor
        extra = _EXTRA_ARGS[len(op._schema.arguments)]
        a, b = ti.fp8(data.a, c.fmt_a, device), ti.fp8_b(data, device)
        bias = ti.bias(data, device)
        sa, sb = ti.f32(data.scale_a, device), ti.f32(data.scale_b, device)
        out_dtype = ti.dtype(c.out)

        def call():
            # A fresh alias of B per call: with trans_B the op transposes its B in place.
            b_view = b.as_strided(b.size(), b.stride(), b.storage_offset())
            return op(a, False, b_view, _TRANS_B[c.layout], None, out_dtype, sa, sb, bias,
                      False, *extra)

        y, seconds = timed_call(call, device, reps)
        return KernelRun(ti.values(y), seconds)
