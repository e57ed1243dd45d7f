"""Deliberately broken backends for the suite's own tests of reports, diff and crash safety.

``broken-degraded``  a worse but legal kernel: it declares the ``fp16`` profile and does what
                     that allows, summing the K products one by one and rounding each partial
                     sum to 11 significant bits (fp16's precision, no overflow), then applying
                     scales and bias in float64 and rounding once. Its errors stay inside its
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
import time
from dataclasses import replace

import numpy as np

from golden.cases import CaseData
from golden.codecs import decode, round_to_format

from .base import Adapter, Capability, KernelRun
from .reference import ReferenceAdapter
from .registry import register

__all__ = ["DegradedAdapter", "AbortAdapter", "ABORT_CASE"]

ABORT_CASE = "op|w=tensor,a=tensor|e4m3|bf16|bias=bf16|M5xN24xK40|b=kn-t|sa=[],sb=[]|set=gauss"


def _cpu_capability() -> Capability:
    from .torch_scaled_mm import CAPABILITIES  # a table only: torch is not imported by this

    return CAPABILITIES["cpu"]


@register("broken-degraded")
class DegradedAdapter(Adapter):
    description = "test-only: fp16-precision sequential accumulation (legal under its fp16 profile)"

    def devices(self) -> list[str]:
        return ["cpu"]

    def capability(self, device: str) -> Capability:
        return replace(_cpu_capability(), profile="fp16")

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        c = data.case
        t0 = time.perf_counter()
        a, b = decode(data.a, c.fmt_a), decode(data.b_kn, c.fmt_b)
        acc = np.zeros((c.M, c.N))
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(c.K):
                acc = _round_bits(acc + a[:, k:k + 1] * b[k:k + 1, :], 11)
            sa, sb = data.scale_a.reshape(-1), data.scale_b.reshape(-1)  # [1], [M] / [1], [N]
            y = acc * (sa[0] if sa.size == 1 else sa[:, None]) * (sb[0] if sb.size == 1 else sb[None, :])
            if data.bias is not None:
                y = y + decode(data.bias_bits, c.bias).reshape(1, -1)
        out = round_to_format(y, c.out)
        return KernelRun(out, time.perf_counter() - t0)


def _round_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Round to ``bits`` significant bits, nearest-even, exponent unbounded (inf/NaN pass)."""
    m, e = np.frexp(x)
    return np.where(np.isfinite(x), np.ldexp(np.round(m * 2.0 ** bits), e - bits), x)


@register("broken-abort")
class AbortAdapter(ReferenceAdapter):
    description = "test-only: the reference, but os.abort() on one case ($FP8_BROKEN_ABORT_CASE)"

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        if data.case.id == os.environ.get("FP8_BROKEN_ABORT_CASE", ABORT_CASE):
            os.abort()
        return super().run(data, device, reps)
