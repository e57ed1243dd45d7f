"""``torch._scaled_mm`` on cpu (oneDNN), cuda (cuBLASLt / CUTLASS row-wise) and xpu (oneDNN).

Capabilities per device are what torch accepts, measured (cpu: torch 2.13; cuda: torch 2.11
on an H100, whose error messages confirmed torch's checks: mat2 column-major, K and N multiples
of 16, no e5m2 x e5m2, row-wise scales need bf16 output, bias only bf16 with bf16 output or
fp16 with fp16 output and none with fp32 output). Inputs are handed over in the case's
layout and scale shapes; a ``[N,K]`` weight is declared unsupported because the op takes
``mat2`` as ``[K,N]`` (passing it through would silently compute ``A @ W`` when K == N).
"""

from __future__ import annotations

from itertools import product

from golden.cases import CaseData
from golden.formats import FP8_FORMATS

from . import torch_inputs as ti
from .base import Adapter, Capability, KernelRun, Unsupported
from .registry import register
from .timing import timed_call
from .torch_inputs import require_torch, torch_devices

_PER_TENSOR = {"[]", "[1]"}
_SCALE_PAIRS = frozenset(
    {(sa, sb) for sa in _PER_TENSOR for sb in _PER_TENSOR} | {("[M,1]", "[1,N]")}
)
_ALL_FP8 = FP8_FORMATS
_OCP = ("e4m3fn", "e5m2")


def _mult16(case) -> bool:
    return case.K % 16 == 0 and case.N % 16 == 0


def _rowwise_bf16(case) -> bool:
    return case.sa not in _PER_TENSOR and case.out == "bf16" or case.sa in _PER_TENSOR


CAPABILITIES = {
    "cpu": Capability(
        formats=frozenset(product(_ALL_FP8, _ALL_FP8)),
        layouts=frozenset({"kn-t", "kn"}),
        scale_pairs=_SCALE_PAIRS,
        profile="fp32",
    ),
    "cuda": Capability(
        formats=frozenset(p for p in product(_OCP, _OCP) if p != ("e5m2", "e5m2")),
        layouts=frozenset({"kn-t"}),
        scale_pairs=_SCALE_PAIRS,
        biases=frozenset({None, "bf16", "fp16"}),
        bias_out=frozenset({("bf16", "bf16"), ("fp16", "fp16")}),
        profile="acc13-trunc-blk128",
        rules=(
            (_mult16, "cuBLASLt needs K and N to be multiples of 16"),
            (_rowwise_bf16, "row-wise scaling on cuda needs bf16 output"),
        ),
    ),
    # Not measured: no XPU was available. Mirrors oneDNN on cpu for the OCP formats; the
    # first XPU run must confirm it (an accepted-but-wrong case fails, a rejection shows up
    # as "kernel raised").
    "xpu": Capability(
        formats=frozenset(product(_OCP, _OCP)),
        layouts=frozenset({"kn-t", "kn"}),
        scale_pairs=_SCALE_PAIRS,
        profile="fp32",
    ),
}
FAST_ACCUM_PROFILE = {"cuda": "acc13-trunc"}


@register("torch")
class TorchScaledMM(Adapter):
    description = "torch._scaled_mm"
    fast_accum = False

    def devices(self) -> list[str]:
        try:
            return torch_devices()
        except Unsupported:
            return []

    def capability(self, device: str) -> Capability:
        cap = CAPABILITIES.get(device, CAPABILITIES["cpu"])
        if self.fast_accum:
            from dataclasses import replace

            if device not in FAST_ACCUM_PROFILE:
                return replace(cap, levels=frozenset(),
                               rules=((lambda c: False, f"use_fast_accum has no effect on {device}"),))
            cap = replace(cap, profile=FAST_ACCUM_PROFILE[device])
        return cap

    def inputs(self, data: CaseData, device: str) -> dict:
        """The keyword arguments of the ``_scaled_mm`` call, as tensors on ``device``."""
        c = data.case
        kw = dict(input=ti.fp8(data.a, c.fmt_a, device), mat2=ti.fp8_b(data, device),
                  scale_a=ti.f32(data.scale_a, device), scale_b=ti.f32(data.scale_b, device),
                  out_dtype=ti.dtype(c.out), use_fast_accum=self.fast_accum)
        if data.bias is not None:
            kw["bias"] = ti.bias(data, device)
        return kw

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        torch = require_torch()
        kw = self.inputs(data, device)
        y, seconds = timed_call(lambda: torch._scaled_mm(**kw), device, reps)
        return KernelRun(ti.values(y), seconds)


@register("torch-fast")
class TorchScaledMMFast(TorchScaledMM):
    description = "torch._scaled_mm(use_fast_accum=True)"
    fast_accum = True
