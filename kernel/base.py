"""The adapter interface every kernel under test implements, and the capability table it declares.

An adapter runs one case on one device and returns the kernel's output as float64 NumPy values.
It declares what it supports as a :class:`Capability` table per device (rows of allowed
values, OpInfo-style) plus the accumulation profile it claims on each device. It hands the
kernel the case's weight layout and scale shapes exactly as given, or declares them unsupported;
it never transposes or reshapes to hide a layout.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from golden.bounds import AccumProfile, get_profile
from golden.cases import GROUPED_SCHEMES, Case, CaseData

__all__ = ["Adapter", "Capability", "Unsupported", "KernelRun"]


class Unsupported(Exception):
    """Raised by an adapter for a case it does not support; the message is the skip reason."""


@dataclass(frozen=True)
class Capability:
    """What an adapter supports on one device. Each field is the set of allowed values;
    ``scale_pairs`` lists allowed (sa, sb) shape pairs; ``rules`` are extra (predicate, reason)
    checks for constraints that span fields."""

    levels: frozenset = frozenset({"op", "layer"})
    formats: frozenset = frozenset()  # (fmt_a, fmt_b) pairs
    outs: frozenset = frozenset({"bf16", "fp16", "fp32"})
    biases: frozenset = frozenset({None, "bf16", "fp16", "fp32"})
    bias_out: frozenset | None = None  # allowed (bias, out) pairs when not every pair works
    layouts: frozenset = frozenset({"kn-t"})
    scale_pairs: frozenset | None = None  # None: every shape pair
    # (w, a) scheme pairs; None: every W8A8 scheme (weight-only a=none and block FP8 are
    # layer schemes of their own that an adapter opts into)
    schemes: frozenset | None = None
    profile: str = "fp32"
    rules: tuple = field(default=())

    def why_not(self, case: Case) -> str | None:
        """The reason ``case`` is unsupported, or None."""
        scheme_ok = ((case.w, case.a) in self.schemes if self.schemes is not None
                     else case.a not in GROUPED_SCHEMES)
        checks = (
            (case.level in self.levels, f"level {case.level!r} not in {sorted(self.levels)}"),
            (scheme_ok, f"scheme w={case.w}, a={case.a} not supported"),
            ((case.fmt_a, case.fmt_b) in self.formats,
             f"format pair {case.fmt_a} x {case.fmt_b} not supported"),
            (case.out in self.outs, f"output dtype {case.out} not supported"),
            (case.bias in self.biases, f"bias dtype {case.bias} not supported"),
            (self.bias_out is None or case.bias is None or (case.bias, case.out) in self.bias_out,
             f"bias {case.bias} with output {case.out} not supported"),
            (case.layout in self.layouts,
             f"weight layout {case.layout!r} not accepted (takes {sorted(self.layouts)})"),
            (self.scale_pairs is None or (case.sa, case.sb) in self.scale_pairs,
             f"scale shapes sa={case.sa}, sb={case.sb} not accepted"),
        )
        for ok, reason in checks:
            if not ok:
                return reason
        for pred, reason in self.rules:
            if not pred(case):
                return reason
        return None


@dataclass
class KernelRun:
    """A kernel's output (float64 values) and its time per call in seconds (see ``run``)."""

    values: np.ndarray
    seconds: float | None = None
    note: str = ""


class Adapter(abc.ABC):
    """A kernel family under test. Subclasses set ``name`` and implement the three methods."""

    name: str = ""
    description: str = ""
    emulated: bool = False

    @abc.abstractmethod
    def devices(self) -> list[str]:
        """Devices this adapter can run on, on this machine (first is preferred)."""

    @abc.abstractmethod
    def capability(self, device: str) -> Capability:
        """The capability table on ``device``."""

    @abc.abstractmethod
    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        """Run the kernel on the case's inputs; raise :class:`Unsupported` to skip.

        With ``reps`` > 0, ``KernelRun.seconds`` is the median of that many further calls
        (``kernel.timing.median_seconds``; the first call is the warm-up); with 0, the time of
        the one call."""

    def why_unavailable(self, device: str) -> str | None:
        """Why ``device`` cannot be used here (None if it can)."""
        if device not in self.devices():
            have = self.devices() or ["none"]
            return f"backend {self.name!r} has no device {device!r} on this machine (has: {', '.join(have)})"
        return None

    def why_not(self, case: Case, device: str) -> str | None:
        return self.why_unavailable(device) or self.capability(device).why_not(case)

    def profile(self, device: str) -> AccumProfile:
        return get_profile(self.capability(device).profile)

    def describe(self, device: str) -> dict:
        """Plain-dict header information for reports."""
        return {"backend": self.name, "device": device, "emulated": self.emulated,
                "profile": self.profile(device).describe()}
