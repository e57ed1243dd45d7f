"""Synthetic kernels with known arithmetic, for checking that the probes recover what they claim.

NumPy models run on the case's FP8 codes (decoded exactly; scales and bias read as
``reference.py`` reads them). Each declares its arithmetic in :data:`ARITHMETIC` (the values
the probes must find) and an accumulation profile from ``golden.bounds.PROFILES`` where one
matches, else ``fp32`` (so the suite's bounds will rightly fail the ones that do worse).

``synthetic-trunc``      exact accumulation (float64: exact for e4m3 x e4m3 up to K = 171,196,
                         DESIGN §4; 2**-53 relative otherwise), scales and bias applied before
                         one output rounding **toward zero** (IEEE: overflow gives the format's
                         maximum, not inf).
``synthetic-blk32-13``   K split into blocks of 32 consecutive products; inside a block the
                         partial sum keeps 13 fraction bits (14 significant), **truncated** after
                         every add (as cuBLASLt truncates, DESIGN §10); each block sum is added to
                         an fp32 accumulator (round-to-nearest-even). Output rounded to nearest-even.
``synthetic-fp16acc``    sequential sum rounded to fp16 (nearest-even, fp16 range: overflow to
                         inf, subnormals kept) after every add; output rounded to nearest-even.

All three apply ``sa * sb * acc + bias`` in float64 and round once to the output type.
"""

from __future__ import annotations

import time
from itertools import product

import numpy as np

from golden.cases import CaseData
from golden.codecs import decode, round_to_format
from golden.formats import FP8_FORMATS, get_format

from .base import Adapter, Capability, KernelRun
from .registry import register

__all__ = ["round_directed", "round_bits", "epilogue", "blocked_sum", "scale_column", "scale_row",
           "bias_values", "ARITHMETIC", "SyntheticAdapter"]

# What each synthetic kernel does, in the probes' vocabulary (tests compare the fingerprint).
ARITHMETIC = {
    "synthetic-trunc": {"output_rounding": "toward-zero", "acc_bits": "exact", "block": None},
    "synthetic-blk32-13": {"output_rounding": "nearest-even", "acc_bits": 13, "block": 32,
                           "truncates": True},
    "synthetic-fp16acc": {"output_rounding": "nearest-even", "acc_bits": 10, "block": None,
                          "truncates": False},
}

# Integer-rounding function per mode (applied to x / quantum) and whether overflow goes to
# inf (True) or to the format's maximum (False), for positive and negative x respectively.
_MODES = {
    "nearest-even": (np.rint, (True, True)),
    "toward-zero": (np.trunc, (False, False)),
    "nearest-away": (lambda t: np.copysign(np.floor(np.abs(t) + 0.5), t), (True, True)),
    "toward-plus-inf": (np.ceil, (True, False)),
    "toward-minus-inf": (np.floor, (False, True)),
}
MODES = tuple(_MODES)


def round_directed(x, fmt, mode: str = "nearest-even") -> np.ndarray:
    """``x`` (float64, exact) rounded to ``fmt`` in rounding ``mode`` (one of :data:`MODES`),
    with the format's subnormal range and IEEE overflow for that mode."""
    f = get_format(fmt)
    rint, (inf_pos, inf_neg) = _MODES[mode]
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(x)
        q = np.maximum(e - 1, f.emin) - f.man_bits
        r = np.ldexp(rint(np.ldexp(x, -q)), q)
        over = np.abs(r) > f.max
        to_inf = np.where(x > 0, inf_pos, inf_neg) & f.has_inf
        big = np.where(to_inf, np.inf, f.max)
        r = np.where(over, np.copysign(big, x), r)
    return np.where(np.isnan(x), np.nan, r)


def round_bits(x: np.ndarray, bits: int, fn=np.rint) -> np.ndarray:
    """``x`` to ``bits`` significant bits with ``fn`` (np.rint, np.trunc), exponent unbounded."""
    m, e = np.frexp(x)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(x), np.ldexp(fn(m * 2.0**bits), e - bits), x)


def scale_column(data: CaseData) -> np.ndarray:
    """``scale_a`` (float32 values) as float64 [M, 1], or [1, 1] for one value."""
    return _broadcastable(data.scale_a, data.case.M, (-1, 1))


def scale_row(data: CaseData) -> np.ndarray:
    """``scale_b`` (float32 values) as float64 [1, N], or [1, 1] for one value."""
    return _broadcastable(data.scale_b, data.case.N, (1, -1))


def _broadcastable(s: np.ndarray, n: int, shape: tuple) -> np.ndarray:
    v = np.asarray(s, np.float32).astype(np.float64).reshape(-1)
    return v.reshape(shape) if v.size == n else v.reshape(1, 1)


def bias_values(data: CaseData) -> np.ndarray | None:
    """The bias as a kernel reads it (float64 values of the bias dtype), [1, N]; or None."""
    if data.bias is None:
        return None
    return decode(data.bias_bits, data.case.bias).reshape(1, -1)


def blocked_sum(a: np.ndarray, b: np.ndarray, inner, block: int | None = None) -> np.ndarray:
    """The [M, N] sum of the K products ``a[:, k] b[k]`` (float64 values, exact) added one by
    one, the partial sum rounded by ``inner`` after every add. With ``block``, the partial sum
    restarts every ``block`` products and each block's sum is added to an fp32 accumulator
    (round-to-nearest-even); without, the one partial sum is the result."""
    k = a.shape[1]

    def partial(k0: int, k1: int) -> np.ndarray:
        part = np.zeros((a.shape[0], b.shape[1]))
        for i in range(k0, k1):
            part = inner(part + np.outer(a[:, i], b[i]))
        return part

    if block is None:
        return partial(0, k)
    total = np.zeros((a.shape[0], b.shape[1]))
    for k0 in range(0, k, block):
        total = round_to_format(total + partial(k0, min(k0 + block, k)), "fp32")
    return total


class SyntheticAdapter(Adapter):
    """Shared plumbing: decode, ``accumulate`` (subclass), epilogue, ``round_out`` (subclass)."""

    profile_name = "fp32"
    output_mode = "nearest-even"

    def devices(self) -> list[str]:
        return ["cpu"]

    def capability(self, device: str) -> Capability:
        return Capability(levels=frozenset({"op"}),
                          formats=frozenset(product(FP8_FORMATS, FP8_FORMATS)),
                          layouts=frozenset({"nk", "kn-t", "kn"}), profile=self.profile_name)

    def accumulate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The [M, N] accumulator from decoded A [M, K] and B [K, N] (float64 values)."""
        raise NotImplementedError

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        c = data.case
        t0 = time.perf_counter()
        a, b = decode(data.a, c.fmt_a), decode(data.b_kn, c.fmt_b)
        with np.errstate(over="ignore", invalid="ignore"):
            acc = self.accumulate(a, b)
        out = epilogue(data, acc, self.output_mode)
        return KernelRun(out, time.perf_counter() - t0)


def epilogue(data: CaseData, acc: np.ndarray, mode: str = "nearest-even") -> np.ndarray:
    """``sa * sb * acc + bias`` in float64 (scales and bias as the case holds them), rounded
    once to the case's output type in rounding ``mode``."""
    bias = bias_values(data)
    with np.errstate(over="ignore", invalid="ignore"):
        y = acc * scale_column(data) * scale_row(data)
        if bias is not None:
            y = y + bias
    return round_directed(y, data.case.out, mode)


@register("synthetic-trunc")
class TruncatingOutput(SyntheticAdapter):
    description = "synthetic: exact accumulation, output rounded toward zero"
    output_mode = "toward-zero"

    def accumulate(self, a, b):
        return a @ b


@register("synthetic-blk32-13")
class Block32Acc13(SyntheticAdapter):
    description = ("synthetic: blocks of 32 products at 13 fraction bits (truncated), "
                   "fp32 outer accumulation")
    block, frac_bits = 32, 13

    def accumulate(self, a, b):
        return blocked_sum(a, b, lambda x: round_bits(x, self.frac_bits + 1, np.trunc),
                           self.block)


@register("synthetic-fp16acc")
class Fp16Accumulation(SyntheticAdapter):
    description = "synthetic: sequential fp16 accumulation (nearest-even after every add)"
    profile_name = "fp16"

    def accumulate(self, a, b):
        return blocked_sum(a, b, lambda x: round_to_format(x, "fp16"))
