"""Mutants whose arithmetic is wrong: accumulation, output rounding, the K loop, the epilogue.

Several are smaller than an output ulp per element (DESIGN §4): only the suite's distribution
checks can see them. Those that replace the parent's arithmetic use the synthetic kernels'
plumbing (``kernel.synthetic.epilogue``: exact products, scales and bias in float64, one
rounding) with the bug in one place.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.cases import CaseData
from golden.codecs import decode, round_to_format, spacing
from golden.formats import get_format

from ..synthetic import bias_values, blocked_sum, epilogue
from .base import Mutant
from .catalogue import mutant

FP16_BLOCK = 32  # products per fp16 partial sum (DESIGN §4's measured sub-ulp bug)
K_TILE = 16


@mutant("fp16-accumulation")
class Fp16Accumulation(Mutant):
    bug = (f"products are summed in fp16 (round-to-nearest after every add, overflow to inf) in "
           f"blocks of {FP16_BLOCK}, the block sums in fp32")
    history = ("a half-precision accumulator (DESIGN §4: fp16 accumulation in blocks of 32 "
               "passes every anchor rule)")
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def compute(self, data: CaseData) -> np.ndarray:
        c = data.case
        a, b = decode(data.a, c.fmt_a), decode(data.b_kn, c.fmt_b)
        with np.errstate(over="ignore", invalid="ignore"):
            # float64 holds fp16 + one FP8 product exactly: one fp16 rounding per add
            total = blocked_sum(a, b, lambda x: x.astype(np.float16).astype(np.float64),
                                FP16_BLOCK)
        return epilogue(data, total)


@mutant("truncating-output")
class TruncatingOutput(Mutant):
    bug = "the final conversion to the output type rounds toward zero instead of to nearest"
    history = "truncating output rounding (DESIGN §4, §9): below one ulp per element"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def compute(self, data: CaseData) -> np.ndarray:
        a = decode(data.a, data.case.fmt_a)
        b = decode(data.b_kn, data.case.fmt_b)
        with np.errstate(over="ignore", invalid="ignore"):
            return epilogue(data, a @ b, "toward-zero")


@mutant("one-ulp-bias")
class OneUlpBias(Mutant):
    bug = "every finite nonzero output is one ulp larger in magnitude than the right one"
    history = "a one-ulp systematic bias (DESIGN §4): within every per-element tolerance"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def output(self, data: CaseData, values: np.ndarray) -> np.ndarray:
        out = data.case.out
        moved = values + np.copysign(spacing(values, out), values)
        with np.errstate(over="ignore", invalid="ignore"):
            moved = round_to_format(np.where(np.isfinite(values), moved, values), out)
        return np.where((values == 0) | ~np.isfinite(values), values, moved)


@mutant("k-tail-dropped")
class KTailDropped(Mutant):
    bug = f"the K loop runs whole tiles of {K_TILE} only: the last K mod {K_TILE} products are lost"
    history = "a lost K tail when K is not a multiple of the tile (DESIGN §9)"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M33xN40xK72|b=kn-t|sa=[],sb=[]"
               "|set=rowscale",)

    def inputs(self, data: CaseData) -> CaseData:
        k = data.case.K
        tail = k % K_TILE
        if not tail:
            return data
        a = np.array(data.a, copy=True)
        a[:, k - tail:] = 0  # code 0 is +0 in every FP8 format
        return replace(data, a=a)


@mutant("bias-after-rounding")
class BiasAfterRounding(Mutant):
    bug = "the bias is added after the product is rounded to the output type, then rounded again"
    history = "an epilogue that adds bias to the converted output (DESIGN §4): below one ulp"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=bf16|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=rowscale",)

    def compute(self, data: CaseData) -> np.ndarray:
        bias = bias_values(data)
        if bias is None:
            return self.parent(data)
        product = self.parent(replace(data, bias=None))
        with np.errstate(over="ignore", invalid="ignore"):
            return round_to_format(product + bias, get_format(data.case.out))
