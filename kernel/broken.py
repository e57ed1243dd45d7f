"""Deliberately broken backends for the suite's own tests of reports, diff and crash safety.

``broken-degraded``  a worse but legal kernel: it declares the ``fp16`` profile and does what
                     that allows, summing the K products one by one and rounding each partial
                     sum to 11 significant bits (fp16's precision, no overflow), then applying
                     scales and bias in float64 and rounding once (the synthetic kernels'
                     plumbing, ``kernel/synthetic.py``). Its errors stay inside its
                     bound but grow against torch/oneDNN's fp32 accumulation, which is what
                     ``report diff --max-growth`` is for.
``broken-abort``     the reference, except that it kills its process (``os.abort``) on the case
                     named by ``$FP8_BROKEN_ABORT_CASE`` (default :data:`ABORT_CASE`), as a kernel
                     that crashes the interpreter would.

They take torch/oneDNN's cpu capability table so that their runs line up case by case with a
``--backend=torch`` run. Not kernels to judge: they exist to be caught.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from golden.cases import CaseData

from .base import Capability, KernelRun
from .reference import ReferenceAdapter
from .registry import register
from .synthetic import SyntheticAdapter, blocked_sum, round_bits

__all__ = ["DegradedAdapter", "AbortAdapter", "ABORT_CASE"]

ABORT_CASE = "op|w=tensor,a=tensor|e4m3|bf16|bias=bf16|M5xN24xK40|b=kn-t|sa=[],sb=[]|set=gauss"


def _cpu_capability() -> Capability:
    from .torch_scaled_mm import CAPABILITIES  # a table only: torch is not imported by this

    return CAPABILITIES["cpu"]


@register("broken-degraded")
class DegradedAdapter(SyntheticAdapter):
    description = "test-only: fp16-precision sequential accumulation (legal under its fp16 profile)"

    def capability(self, device: str) -> Capability:
        return replace(_cpu_capability(), profile="fp16")

    def accumulate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return blocked_sum(a, b, lambda x: round_bits(x, 11))


@register("broken-abort")
class AbortAdapter(ReferenceAdapter):
    description = "test-only: the reference, but os.abort() on one case ($FP8_BROKEN_ABORT_CASE)"

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        if data.case.id == os.environ.get("FP8_BROKEN_ABORT_CASE", ABORT_CASE):
            os.abort()
        return super().run(data, device, reps)
