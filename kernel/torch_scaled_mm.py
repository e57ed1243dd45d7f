"""``torch._scaled_mm`` on cpu (oneDNN), cuda (cuBLASLt / CUTLASS row-wise) and xpu (oneDNN).

Capabilities per device are what torch accepts, measured (cpu: torch 2.13; cuda: torch 2.11
on an H100, whose error messages confirmed torch's checks: mat2 column-major, K and N multiples
of 16, no e5m2 x e5m2, row-wise scales need bf16 output, bias only bf16 with bf16 output or
fp16 with fp16 output and none with fp32 output). Inputs are handed over in the case's
layout and scale shapes; a ``[N,K]`` weight is declared unsupported because the op takes
``mat2`` as ``[K,N]`` (passing it through would silently compute ``A @ W`` when K == N).
"""

from __future__ import annotations

import time
from itertools import product

import numpy as np

from golden.cases import CaseData

from .base import Adapter, Capability, KernelRun, Unsupported
from .registry import register
from .timing import median_seconds

_TORCH_FMT = {
    "e4m3fn": "float8_e4m3fn",
    "e5m2": "float8_e5m2",
    "e4m3fnuz": "float8_e4m3fnuz",
    "e5m2fnuz": "float8_e5m2fnuz",
}
_TORCH_OUT = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_PER_TENSOR = {"[]", "[1]"}
_SCALE_PAIRS = frozenset(
    {(sa, sb) for sa in _PER_TENSOR for sb in _PER_TENSOR} | {("[M,1]", "[1,N]")}
)
_ALL_FP8 = tuple(_TORCH_FMT)
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
        profile="acc15-trunc-blk128",
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
FAST_ACCUM_PROFILE = {"cuda": "acc15-trunc"}


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise Unsupported(f"torch is not importable: {exc}; pip install torch") from None
    return torch


@register("torch")
class TorchScaledMM(Adapter):
    description = "torch._scaled_mm"
    fast_accum = False

    def devices(self) -> list[str]:
        try:
            torch = _torch()
        except Unsupported:
            return []
        found = []
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            found.append("xpu")
        if torch.cuda.is_available():
            found.append("cuda")
        found.append("cpu")
        return found

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
        torch = _torch()
        c = data.case

        def fp8(codes, fmt):
            t = torch.from_numpy(np.asarray(codes))  # keeps the NumPy strides (layout)
            return t.view(getattr(torch, _TORCH_FMT[fmt])).to(device)

        def fresh(x):
            # A new tensor with torch's default strides: NumPy gives an empty [0,1] array
            # strides (0, 0), which _scaled_mm rejects ("scale_a.stride(1) to be 1").
            return torch.empty(x.shape, dtype=torch.float32).copy_(torch.from_numpy(x)).to(device)

        kw = dict(
            scale_a=fresh(data.scale_a),
            scale_b=fresh(data.scale_b),
            out_dtype=getattr(torch, _TORCH_OUT[c.out]),
            use_fast_accum=self.fast_accum,
        )
        if data.bias is not None:
            bits = data.bias_bits
            dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[c.bias]
            raw = torch.from_numpy(bits.view(np.int16) if bits.dtype == np.uint16 else bits.view(np.int32))
            kw["bias"] = raw.view(dt).to(device)
        return dict(input=fp8(data.a, c.fmt_a), mat2=fp8(data.b(), c.fmt_b), **kw)

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        torch = _torch()
        kw = self.inputs(data, device)
        sync = getattr(torch, device).synchronize if device in ("cuda", "xpu") else (lambda: None)
        sync()
        t0 = time.perf_counter()
        y = torch._scaled_mm(**kw)
        sync()
        seconds = time.perf_counter() - t0
        if reps:  # the call above was the warm-up
            seconds = median_seconds(lambda: torch._scaled_mm(**kw), device, reps, warmup=0)
        return KernelRun(y.float().cpu().numpy().astype(np.float64), seconds)


@register("torch-fast")
class TorchScaledMMFast(TorchScaledMM):
    description = "torch._scaled_mm(use_fast_accum=True)"
    fast_accum = True
