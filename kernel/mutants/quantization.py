"""Mutants of the activation quantization in front of the GEMM (layer cases): what the kernel
does with vLLM's bf16/fp16 activations before the FP8 product."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.cases import CaseData
from golden.codecs import decode, encode
from golden.matmul import grouped_mm_exact

from ..synthetic import bias_values, scale_row
from .base import Mutant
from .catalogue import mutant


@mutant("w8a8-as-weight-only")
class W8A8AsWeightOnly(Mutant):
    bug = ("a W8A8 layer is served by the weight-only (W8A16) path: the activations are never "
           "quantized and multiply the dequantized weight as they come")
    history = ("vLLM's XPU kernel selection could hand a W8A8 checkpoint to the weight-only "
               "class (DESIGN §1: activations left unquantized by the wrong kernel)")
    witness = ("layer|w=tensor,a=static|e4m3|bf16|bias=none|M17xN64xK128|b=kn-t|sa=[],sb=[]"
               "|set=gauss|x=bf16",)

    def compute(self, data: CaseData) -> np.ndarray:
        c = data.case
        if data.x is None:  # op level: the kernel gets FP8 activations, no path to confuse
            return self.parent(data)
        return grouped_mm_exact(data.x, c.x, decode(data.b_kn, c.fmt_b), c.fmt_b,
                                np.ones((1, 1)), scale_row(data), c.K, bias_values(data), c.out)


@mutant("unsaturated-quant-cast")
class UnsaturatedQuantCast(Mutant):
    bug = ("the activation quantizer casts x * (1/scale) to FP8 without the clamp to +-FP8_MAX: "
           "a value past the format's range becomes NaN (e4m3fn) or inf (e5m2)")
    history = ("an unsaturated cast in the quantization routine (DESIGN §9). With a dynamic "
               "scale x/scale exceeds FP8_MAX by a rounding at most and the cast rounds it back; "
               "a static scale below amax/FP8_MAX overflows it")
    witness = ("layer|w=tensor,a=static|e4m3|bf16|bias=none|M1xN48xK48|b=kn-t|sa=[],sb=[]"
               "|set=outlier|x=bf16",)

    def inputs(self, data: CaseData) -> CaseData:
        if data.x is None:
            return data
        c = data.case
        scale = np.asarray(data.scale_a, np.float32).reshape(-1, 1)
        with np.errstate(all="ignore"):
            v = data.x.astype(np.float32) * (np.float32(1) / scale)
        return replace(data, a=encode(v.astype(np.float64), c.fmt_a, overflow="ieee"))
