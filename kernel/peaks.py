"""Published peak FP8 tensor-core throughput of accelerators, looked up by device name.

The figures are vendor datasheet peaks for dense matrices (no 2:4 structured sparsity), in
TFLOP/s: ceilings at boost clock, not measurements of this suite. NVIDIA's datasheets print
the FP8 figure "with sparsity" and state that it is one half without; the table holds that
half. A kernel's TFLOP/s over the peak says how far it is from the ceiling, not whether it is
well tuned (small shapes never get near it).

:data:`PEAKS` is the table: one row per part, matched by a regular expression searched in the
device name (``torch.cuda.get_device_name()``, e.g. ``"NVIDIA H100 80GB HBM3"``). The first
row that matches wins, so a variant (``H100 NVL``, ``H100 PCIe``) comes before the part whose
pattern would also take it. A lookup never raises: an unknown name (any CPU) has no peak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Peak", "PEAKS", "FP8_FORMATS", "find_peak", "peak_tflops"]

# The OCP FP8 formats these parts multiply natively, at one peak for both and for mixed pairs.
# AMD's fnuz formats are not among them.
FP8_FORMATS = frozenset({"e4m3fn", "e5m2"})
_ALIASES = {"e4m3": "e4m3fn"}  # the short name in case ids

_H100 = ("NVIDIA H100 datasheet", "https://www.nvidia.com/en-us/data-center/h100/")
_H200 = ("NVIDIA H200 datasheet", "https://www.nvidia.com/en-us/data-center/h200/")
_H800 = ("NVIDIA H800 datasheet", None)
_L40S = ("NVIDIA L40S datasheet", "https://www.nvidia.com/en-us/data-center/l40s/")
_L4 = ("NVIDIA L4 datasheet", "https://www.nvidia.com/en-us/data-center/l4/")


@dataclass(frozen=True)
class Peak:
    """One part: its dense FP8 peak and where the figure comes from."""

    part: str
    pattern: str  # regular expression searched in the device name
    tflops: float  # dense FP8 TFLOP/s
    source: str
    formats: frozenset[str] = FP8_FORMATS


def _halved(doc: tuple[str, str | None], part: str, sparse: str) -> str:
    """The source of a dense figure that is half the datasheet's "with sparsity" one."""
    name, url = doc
    return (f"{name}, {part}: FP8 Tensor Core {sparse} TFLOPS with sparsity, halved for dense"
            + (f"; {url}" if url else ""))


PEAKS: tuple[Peak, ...] = (
    Peak("H100 NVL", r"\bH100\b.*\bNVL\b", 1670.5, _halved(_H100, "H100 NVL", "3,341")),
    Peak("H100 PCIe", r"\bH100\b.*\bPCIe\b", 1513.0, _halved(_H100, "H100 PCIe", "3,026")),
    # torch names the SXM part after its memory ("NVIDIA H100 80GB HBM3"); the PCIe card's is HBM2e
    Peak("H100 SXM", r"\bH100\b.*\b(?:HBM3|SXM)", 1979.0, _halved(_H100, "H100 SXM", "3,958")),
    Peak("H200 NVL", r"\bH200\b.*\bNVL\b", 1670.5, _halved(_H200, "H200 NVL", "3,341")),
    Peak("H200 SXM", r"\bH200\b", 1979.0, _halved(_H200, "H200 SXM", "3,958")),
    Peak("H800 PCIe", r"\bH800\b.*\bPCIe\b", 1513.0, _halved(_H800, "H800 PCIe", "3,026")),
    Peak("H800 SXM", r"\bH800\b", 1979.0, _halved(_H800, "H800 SXM", "3,958")),
    Peak("L40S", r"\bL40S\b", 733.0, _halved(_L40S, "L40S", "1,466")),
    Peak("L4", r"\bL4\b", 242.5, _halved(_L4, "L4", "485")),
)


def find_peak(device_name: str) -> Peak | None:
    """The first row of :data:`PEAKS` whose pattern occurs in the device name, or None."""
    return next((p for p in PEAKS if re.search(p.pattern, device_name)), None)


def peak_tflops(device_name: str, fmt_a: str, fmt_b: str) -> tuple[float, str] | None:
    """``(dense TFLOP/s, source)`` of an ``fmt_a`` x ``fmt_b`` product on the named device, or
    None where no published figure applies: an unknown device (any CPU), or a format the part
    does not multiply (bf16 activations of a weight-only layer, fnuz). Formats are named as in
    ``golden.cases.Case`` (``e4m3fn``, ``e5m2``; ``e4m3`` reads as ``e4m3fn``)."""
    row = find_peak(device_name)
    formats = {_ALIASES.get(fmt_a, fmt_a), _ALIASES.get(fmt_b, fmt_b)}
    if row is None or not formats <= row.formats:
        return None
    return row.tflops, row.source
