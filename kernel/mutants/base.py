"""The mutant adapter: a correct kernel (the reference) with one bug, claiming what a production
FP8 GEMM with fp32 accumulation claims.

A mutant changes the inputs it hands its parent (``inputs``), the parent's arithmetic
(``compute``) or the output it returns (``output``). It claims the ``fp32`` profile, the one
oneDNN's ``torch._scaled_mm`` on CPU claims: its parent is exact, so every failure the suite
reports against it is the bug's, never accumulation noise, and the suite must find the bug
under the bound and the statistics a real fp32 kernel gets (an ``exact`` claim would make
every bug a bound failure). It takes the reference's W8A8 cases: op and layer level, every
format pair, layout and scale shape (the weight-only and block schemes are other kernels).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from golden.cases import CaseData

from ..base import Capability, KernelRun
from ..reference import ReferenceAdapter

__all__ = ["Mutant"]


class Mutant(ReferenceAdapter):
    """The reference with one bug. Subclasses set ``bug`` (what is wrong), ``history`` (where
    such a bug was seen), ``witness`` (default-grid case ids, run in order on one instance,
    whose last output differs from the parent's: the proof that the bug is live) and override
    ``inputs``, ``compute`` or ``output``. ``stateful``: the output depends on earlier calls."""

    bug: str = ""
    history: str = ""
    witness: tuple[str, ...] = ()
    stateful: bool = False

    def capability(self, device: str) -> Capability:
        return replace(super().capability(device), schemes=None, profile="fp32")

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        t0 = time.perf_counter()
        values = self.compute(data)
        return KernelRun(values, time.perf_counter() - t0, note=f"mutant {self.name}: {self.bug}")

    def compute(self, data: CaseData) -> np.ndarray:
        return self.output(data, self.parent(self.inputs(data)))

    def inputs(self, data: CaseData) -> CaseData:
        """What the buggy kernel hands its arithmetic (default: the case's inputs)."""
        return data

    def output(self, data: CaseData, values: np.ndarray) -> np.ndarray:
        """What the buggy kernel returns given the parent's output (default: that output)."""
        return values

    def parent(self, data: CaseData) -> np.ndarray:
        """The correct kernel's output on ``data``: the reference's Y*."""
        return ReferenceAdapter.run(self, data, "cpu").values

