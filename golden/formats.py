"""Floating-point formats the reference knows: the four FP8 formats and the GEMM output types.

A :class:`FloatFormat` is a plain description (exponent and mantissa widths, bias, how the
format spells NaN, infinity and negative zero). Everything numeric is derived from it, so a
format is added by adding one row to :data:`FORMATS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

__all__ = ["FloatFormat", "FORMATS", "FP8_FORMATS", "OUT_FORMATS", "get_format"]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format with ``exp_bits`` exponent and ``man_bits`` fraction bits.

    ``special`` says how the top of the code space is used:
    ``"ieee"``  all-ones exponent holds inf (fraction 0) and NaN (IEEE 754, e5m2, bf16, fp16, fp32);
    ``"fn"``    finite only, the single all-ones code S.1111.111 is NaN (OCP e4m3fn);
    ``"fnuz"``  finite, no negative zero, code 0x80 is the only NaN (e4m3fnuz, e5m2fnuz).
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    special: str
    storage_bits: int

    @property
    def has_inf(self) -> bool:
        return self.special == "ieee"

    @property
    def has_neg_zero(self) -> bool:
        return self.special != "fnuz"

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number (2**emin)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite binade."""
        top = (1 << self.exp_bits) - 1
        return (top - 1 if self.special == "ieee" else top) - self.bias

    @cached_property
    def max(self) -> float:
        """Largest finite value."""
        frac_max = (1 << self.man_bits) - 1
        if self.special == "fn":
            frac_max -= 1  # S.1111.111 is NaN
        return (1 + frac_max / (1 << self.man_bits)) * 2.0**self.emax

    @property
    def min_normal(self) -> float:
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits)

    @property
    def precision(self) -> int:
        """Significand bits including the implicit one."""
        return self.man_bits + 1

    @property
    def eps(self) -> float:
        """Unit roundoff for round-to-nearest: half the distance from 1 to the next value."""
        return 2.0 ** (-self.man_bits - 1)

    @property
    def nan_code(self) -> int:
        """The code this suite writes for NaN (positive where the format has a sign on NaN)."""
        if self.special == "fnuz":
            return 1 << (self.storage_bits - 1)
        if self.special == "fn":
            return (1 << (self.storage_bits - 1)) - 1
        # quiet NaN: all-ones exponent, top fraction bit set
        return ((1 << self.exp_bits) - 1) << self.man_bits | 1 << (self.man_bits - 1)

    def __str__(self) -> str:
        return self.name


FORMATS: dict[str, FloatFormat] = {
    f.name: f
    for f in (
        FloatFormat("e4m3fn", 4, 3, 7, "fn", 8),
        FloatFormat("e5m2", 5, 2, 15, "ieee", 8),
        FloatFormat("e4m3fnuz", 4, 3, 8, "fnuz", 8),
        FloatFormat("e5m2fnuz", 5, 2, 16, "fnuz", 8),
        FloatFormat("bf16", 8, 7, 127, "ieee", 16),
        FloatFormat("fp16", 5, 10, 15, "ieee", 16),
        FloatFormat("fp32", 8, 23, 127, "ieee", 32),
    )
}
FP8_FORMATS = ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz")
OUT_FORMATS = ("bf16", "fp16", "fp32")

# Common aliases users type (torch dtype names and short forms).
_ALIASES = {
    "e4m3": "e4m3fn",
    "float8_e4m3fn": "e4m3fn",
    "float8_e5m2": "e5m2",
    "float8_e4m3fnuz": "e4m3fnuz",
    "float8_e5m2fnuz": "e5m2fnuz",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
}


def get_format(name: str | FloatFormat) -> FloatFormat:
    """Look a format up by name or alias; an unknown name lists the known ones."""
    if isinstance(name, FloatFormat):
        return name
    key = _ALIASES.get(str(name), str(name))
    try:
        return FORMATS[key]
    except KeyError:
        known = ", ".join(list(FORMATS) + sorted(_ALIASES))
        raise ValueError(f"unknown floating-point format {name!r}; known: {known}") from None
