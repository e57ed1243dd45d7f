"""Mutants that pass the right numbers to the wrong place: weight layout, bias, padding and
format dispatch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.cases import CaseData
from golden.codecs import round_to_format

from ..synthetic import bias_values
from .base import Mutant
from .catalogue import mutant

ROW_TILE = 16


@mutant("double-transpose")
class DoubleTranspose(Mutant):
    bug = ("when K == N the weight's orientation cannot be told from its shape and the kernel "
           "transposes it a second time: it computes A @ B^T")
    history = "weights transposed twice or not at all when K == N (DESIGN §1, the XPU path)"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def inputs(self, data: CaseData) -> CaseData:
        if data.case.K != data.case.N:
            return data
        return replace(data, b_kn=np.ascontiguousarray(data.b_kn.T))


@mutant("bias-dropped")
class BiasDropped(Mutant):
    bug = "the bias is never added"
    history = "bias dropped by an epilogue that was not selected (DESIGN §9)"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=bf16|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=rowscale",)

    def inputs(self, data: CaseData) -> CaseData:
        return replace(data, bias=None)


@mutant("bias-twice")
class BiasTwice(Mutant):
    bug = "the bias is added twice (by the GEMM epilogue and again by the caller)"
    history = "bias added twice (DESIGN §9)"
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=bf16|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=rowscale",)

    def inputs(self, data: CaseData) -> CaseData:
        if data.bias is None:
            return data
        return replace(data, bias=2.0 * np.asarray(data.bias, np.float64))


@mutant("padded-rows-leak")
class PaddedRowsLeak(Mutant):
    bug = (f"M is padded to a multiple of {ROW_TILE} for the kernel's row tile and the output "
           "is never narrowed back: the padded rows are returned too")
    history = ("vLLM pads the activation rows for the GEMM and narrows the output afterwards "
               "(Fp8LinearOp's output padding); a missing narrow leaks the padded rows")
    witness = ("op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=gauss",)

    def output(self, data: CaseData, values: np.ndarray) -> np.ndarray:
        c = data.case
        pad = -c.M % ROW_TILE
        if not pad:
            return values
        bias = bias_values(data)
        row = np.zeros((1, c.N)) if bias is None else round_to_format(bias, c.out)
        return np.vstack([values, np.repeat(row, pad, axis=0)])  # zero rows give the bias


@mutant("formats-swapped")
class FormatsSwapped(Mutant):
    bug = ("the mixed-format dispatch swaps the FP8 formats: A's codes are read as B's format "
           "and B's as A's (e4m3 read as e5m2 and back)")
    history = "e5m2 and e4m3 swapped (DESIGN §9)"
    witness = ("op|w=tensor,a=tensor|e4m3xe5m2|bf16|bias=none|M1xN64xK64|b=kn-t|sa=[],sb=[]"
               "|set=range",)

    def inputs(self, data: CaseData) -> CaseData:
        c = data.case
        if c.fmt_a == c.fmt_b:
            return data
        return replace(data, case=c.replace(fmt_a=c.fmt_b, fmt_b=c.fmt_a))
