"""``--reference-device``'s encoding of large case inputs: ``golden.codecs.encode`` of FP8
formats on a torch device, the same codes.

``golden.codecs`` encodes by integer arithmetic on float64 bits (round to nearest-even at
the format's precision, one exact ``rint`` below its normal range, the range applied, a table
keyed by the value's bf16 bits). :func:`encode_tensor` does the same steps in torch's int64
and float64, so any device gives NumPy's codes; ``tests/test_device_codecs.py`` checks every
format and overflow mode on edge values (each value, each midpoint and its float64
neighbours, overflow, subnormals, signed zeros, NaN) and on random float64 bits, on each device
this machine has. :class:`TorchCodec` encodes arrays of at least ``MIN_VALUES`` values there
and smaller ones on NumPy: on the H100 the op inputs of ``python -m conformance.bench
device``'s eight cases took 1.36 s with it and 2.33 s with NumPy's encode (8 host threads).
"""

from __future__ import annotations

import numpy as np

from golden.codecs import check_overflow, encode, encode_table
from golden.formats import FloatFormat, get_format

__all__ = ["TorchCodec", "encode_tensor"]


def encode_tensor(x, fmt: FloatFormat | str, overflow: str = "ieee"):
    """uint8 codes (a tensor on ``x``'s device) of the float64 tensor ``x`` in the 8-bit
    format ``fmt``: ``golden.codecs.encode``, bit for bit."""
    import torch

    fmt = get_format(fmt)
    if fmt.storage_bits != 8:
        raise ValueError(f"encode_tensor is for 8-bit formats, not {fmt.name}")
    check_overflow(overflow)
    if x.dtype != torch.float64:
        raise TypeError(f"encode_tensor takes float64 values, got {x.dtype}")
    x = x.contiguous()
    # golden.codecs.round_bits: add half a quantum (less one, plus the kept last bit) and clear
    # the dropped bits; int64 wraps as uint64 does, and ">> drop & 1" reads the same bit.
    drop = 52 - fmt.man_bits
    bits = x.view(torch.int64)
    r = ((bits >> drop) & 1) + bits + ((1 << (drop - 1)) - 1)
    r &= -(1 << drop)
    r = r.view(torch.float64)
    # golden.codecs.round_unbounded: below the normal range (and NaN) a fixed quantum; torch's
    # round is IEEE round-half-even, as np.rint
    q = fmt.emin - fmt.man_bits
    low = ~(x.abs() >= fmt.min_normal)
    r = torch.where(low, torch.round(x * 2.0**-q) * 2.0**q, r)
    # golden.codecs.limit_range
    over = r.abs() > fmt.max  # false for NaN
    if overflow == "saturate":
        edge = torch.copysign(torch.full_like(r, fmt.max), r)
    elif fmt.has_inf:
        edge = torch.copysign(torch.full_like(r, torch.inf), r)
    else:
        edge = torch.full_like(r, torch.nan)
    r = torch.where(over, edge, r)
    if not fmt.has_neg_zero:
        r = torch.where(r == 0, torch.zeros_like(r), r)
    # golden.codecs._encode: the value is exact in float32; its top 16 bits key the table
    key = (r.to(torch.float32).view(torch.int32) >> 16) & 0xFFFF
    table = torch.from_numpy(np.array(encode_table(fmt.name))).to(x.device)
    return table[key.long()]


class TorchCodec:
    """``encode(x, fmt, overflow)`` as ``golden.codecs.encode``, running on ``device`` for
    FP8 arrays of at least ``MIN_VALUES`` values (they cross as float64 and come back as
    codes); NumPy for the rest. ``build(..., codec=)`` takes it."""

    MIN_VALUES = 1 << 20

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, device

    def __repr__(self) -> str:
        return f"TorchCodec({self.device!r})"

    def encode(self, x, fmt: FloatFormat | str, overflow: str = "ieee") -> np.ndarray:
        fmt = get_format(fmt)
        x = np.asarray(x, dtype=np.float64)
        if x.size < self.MIN_VALUES or fmt.storage_bits != 8:
            return encode(x, fmt, overflow)
        t = self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        out = np.empty(x.shape, np.uint8)
        self.torch.from_numpy(out).copy_(encode_tensor(t, fmt, overflow))
        return out

