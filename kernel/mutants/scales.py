"""Mutants that read a scale wrongly: the bug family of the XPU FP8 path (DESIGN §1)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.cases import CaseData
from golden.codecs import decode
from golden.matmul import grouped_mm_exact

from ..synthetic import bias_values, scale_column
from .base import Mutant
from .catalogue import mutant


@mutant("n1-scale-as-block")
class N1ScaleAsBlock(Mutant):
    bug = ("a per-channel [N,1] weight scale takes the block route: its N values scale N "
           "blocks of K/N along K instead of the N output channels")
    history = ("vllm-xpu-kernels #440: fp8_gemm_w8a16 routes a 2-D scale with size(0) > 1 as "
               "a block scale (the seed change's [N,1] per-channel scales, DESIGN §1)")
    witness = ("op|w=channel,a=tensor|e4m3|bf16|bias=none|M17xN64xK128|b=kn-t|sa=[],sb=[N,1]"
               "|set=rowscale",)

    def compute(self, data: CaseData) -> np.ndarray:
        c = data.case
        if c.sb != "[N,1]" or c.N == 1:
            return self.parent(data)
        if c.K % c.N:
            raise RuntimeError(f"Weight block scale dims must divide [K, N]: scale "
                               f"[{c.N}, 1], K={c.K}")
        per_block = np.asarray(data.scale_b, np.float32).reshape(-1, 1)  # [G=N, 1]: one per block
        return grouped_mm_exact(decode(data.a, c.fmt_a), c.fmt_a, decode(data.b_kn, c.fmt_b),
                                c.fmt_b, scale_column(data), per_block, c.K // c.N,
                                bias_values(data), c.out)


@mutant("token-scale-along-n")
class TokenScaleAlongN(Mutant):
    bug = ("the per-token activation scale is indexed by the output column: element [m, n] "
           "gets sa[n mod M] instead of sa[m]")
    history = "scale on the wrong axis (DESIGN §9): an [M,1] scale broadcast as [1,M] along N"
    witness = ("op|w=tensor,a=token|e4m3|bf16|bias=none|M17xN64xK128|b=kn-t|sa=[M,1],sb=[1,N]"
               "|set=saturate",)

    def inputs(self, data: CaseData) -> CaseData:
        sa = np.asarray(data.scale_a, np.float32).reshape(-1)
        if sa.size <= 1 or (sa == sa[0]).all():  # one value (expanded or not): no axis to miss
            return data
        n = data.case.N
        sb = np.broadcast_to(np.asarray(data.scale_b, np.float32).reshape(-1), (n,))
        along_n = (sa[np.arange(n) % sa.size] * sb).astype(np.float32)
        return replace(data, scale_a=np.ones_like(data.scale_a),
                       scale_b=along_n.reshape(data.scale_b.shape) if data.scale_b.size == n
                       else along_n)


@mutant("reciprocal-weight-scale")
class ReciprocalWeightScale(Mutant):
    bug = "the weight scale is inverted: 1/scale is applied (weight_scale read as weight_scale_inv)"
    history = ("checkpoints store weight_scale (dequantize by multiplying) or weight_scale_inv "
               "(block FP8); a loader that confuses them inverts every weight")
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def inputs(self, data: CaseData) -> CaseData:
        with np.errstate(divide="ignore"):
            inv = (np.float32(1) / np.asarray(data.scale_b, np.float32)).astype(np.float32)
        return replace(data, scale_b=inv)


@mutant("first-channel-scale")
class FirstChannelScale(Mutant):
    bug = "every output channel gets the first channel's weight scale"
    history = "a per-channel scale read as per-tensor (DESIGN §9: first channel's scale for all)"
    witness = ("op|w=channel,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[M,1],sb=[1,N]"
               "|set=saturate",)

    def inputs(self, data: CaseData) -> CaseData:
        sb = np.asarray(data.scale_b, np.float32)
        if sb.size <= 1:
            return data
        return replace(data, scale_b=np.full_like(sb, sb.reshape(-1)[0]))


@mutant("stale-granularity-cache")
class StaleGranularityCache(Mutant):
    bug = ("the kernel caches its primitive by (M, N, K) only; a later call at the same shape "
           "with another scale granularity reads its scales as the cached primitive does "
           "(built for one value, it reads the first of N)")
    history = ("oneDNN's fp8 primitive key carries scale numels, not granularity "
               "(docs/vllm-0.33-notes.md §6.2); caches keyed without the granularity (DESIGN §1)")
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",
               "op|w=channel,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[M,1],sb=[1,N]"
               "|set=saturate")
    stateful = True

    def __init__(self):
        self._built: dict[tuple, tuple[bool, bool]] = {}

    def inputs(self, data: CaseData) -> CaseData:
        c = data.case
        many = (np.size(data.scale_a) > 1, np.size(data.scale_b) > 1)
        built = self._built.setdefault((c.M, c.N, c.K), many)
        sa, sb = data.scale_a, data.scale_b
        if many[0] and not built[0]:
            sa = np.full_like(sa, np.asarray(sa).reshape(-1)[0])
        if many[1] and not built[1]:
            sb = np.full_like(sb, np.asarray(sb).reshape(-1)[0])
        return replace(data, scale_a=sa, scale_b=sb)
