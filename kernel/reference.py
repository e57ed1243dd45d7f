"""The reference model as a backend: returns Y* itself. Exact profile, zero error expected."""

from __future__ import annotations

import time
from itertools import product

import numpy as np

from golden.cases import A_SCHEMES, BLOCK, W_SCHEMES, CaseData
from golden.codecs import decode
from golden.formats import FP8_FORMATS
from golden.matmul import grouped_mm_exact, scaled_mm_exact

from .base import Adapter, Capability, KernelRun
from .registry import register


@register("reference")
class ReferenceAdapter(Adapter):
    description = "golden NumPy model (exact accumulation, correctly rounded)"

    def devices(self) -> list[str]:
        return ["cpu"]

    def capability(self, device: str) -> Capability:
        return Capability(
            formats=frozenset((a, b) for a in FP8_FORMATS for b in FP8_FORMATS),
            layouts=frozenset({"nk", "kn-t", "kn"}),
            schemes=frozenset(product(W_SCHEMES, {a for v in A_SCHEMES.values() for a in v})),
            profile="exact",
        )

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        """Recompute Y* from the inputs exactly as a kernel receives them (layout, shapes).
        One call whatever ``reps`` says: its time is the reference's own cost."""
        c = data.case
        b = data.b()
        b_kn = b.T if c.layout == "nk" else b
        bias = None if data.bias is None else decode(data.bias_bits, c.bias)
        t0 = time.perf_counter()
        if c.a == "none":  # weight-only: x times the dequantized weight
            y = grouped_mm_exact(data.x, c.x, decode(b_kn, c.fmt_b), c.fmt_b, np.ones((1, 1)),
                                 data.scale_b.reshape(1, -1), c.K, bias, c.out)
            return KernelRun(y, time.perf_counter() - t0)
        if c.a == "group":  # block FP8: [M,G] activation and [Nb,Kb] weight-block scales
            sb = np.repeat(data.scale_b.T, BLOCK, axis=1)[:, :c.N]
            y = grouped_mm_exact(decode(data.a, c.fmt_a), c.fmt_a, decode(b_kn, c.fmt_b),
                                 c.fmt_b, data.scale_a, sb, BLOCK, bias, c.out)
            return KernelRun(y, time.perf_counter() - t0)
        y = scaled_mm_exact(data.a, c.fmt_a, b_kn, c.fmt_b, data.scale_a.reshape(-1),
                            data.scale_b.reshape(-1), bias, c.out)
        return KernelRun(y, time.perf_counter() - t0)
