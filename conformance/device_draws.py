"""``--reference-device``'s input draws: ``golden.rng.Bits`` with its large draws on a torch
device, the same bits.

A case's inputs are SplitMix64 words mapped to values by integer arithmetic and at most one
exact float64 step (``golden/rng.py``), so any machine that does 64-bit integer arithmetic
gives NumPy's bits. :class:`TorchBits` computes the draws of at least ``MIN_WORDS`` words
(a 4096 x 6144 weight's Gaussians are 151M words: most of a large case's input time on the
host) on the device in int64 (wrapping multiplies, shifts masked to be logical) and returns
NumPy arrays; smaller draws stay on NumPy. ``tests/test_device_draws.py`` checks every draw
against NumPy on each device this machine has.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from golden.rng import SPLITMIX64, Bits, draw_shape

__all__ = ["TorchBits", "draws_on"]


def _s64(u: int) -> int:
    """The int64 with the bits of uint64 ``u``."""
    return u - (1 << 64) if u >= 1 << 63 else u


_GAMMA, _MUL1, _MUL2 = (_s64(c) for c in SPLITMIX64)  # golden.rng's constants, as int64


class TorchBits(Bits):
    """``Bits(key, seed)`` whose draws of ``MIN_WORDS`` words or more run on ``device``."""

    MIN_WORDS = 1 << 20
    CHUNK_WORDS = 1 << 25  # words per device pass (256 MB of int64)

    def __init__(self, key: str, seed: int, device: str):
        import torch

        super().__init__(key, seed)
        self.torch, self.device = torch, device

    def __repr__(self) -> str:
        return f"TorchBits({self.key!r}, {self.seed}, {self.device!r})"

    # -- the words ----------------------------------------------------------------------------
    def _lsr(self, z, s: int):
        """Logical right shift of int64 ``z`` by ``s`` (torch's >> is arithmetic)."""
        return (z >> s) & ((1 << (64 - s)) - 1)

    def _words(self, skey: int, start: int, count: int):
        """SplitMix64 outputs ``start .. start+count-1`` as an int64 tensor on the device."""
        t = self.torch
        z = t.arange(start + 1, start + count + 1, dtype=t.int64, device=self.device)
        z *= _GAMMA
        z += _s64(skey)
        z ^= self._lsr(z, 30)
        z *= _MUL1
        z ^= self._lsr(z, 27)
        z *= _MUL2
        z ^= self._lsr(z, 31)
        return z

    def _device_map(self, stream: str, shape, per: int, fn, dtype):
        """``fn`` (torch, on ``per`` words per element) over the draw, chunk by chunk."""
        shape = draw_shape(shape)
        n = math.prod(shape)
        out = np.empty(n, dtype)
        skey = self._key(stream)
        step = max(1, self.CHUNK_WORDS // per)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            w = self._words(skey, lo * per, (hi - lo) * per)
            # straight into the array (through .cpu().numpy() and a copy: 10x the time)
            self.torch.from_numpy(out[lo:hi]).copy_(fn(w.reshape(hi - lo, per) if per > 1 else w))
        return out.reshape(shape)

    def _large(self, shape, per: int) -> bool:
        return math.prod(draw_shape(shape)) * per >= self.MIN_WORDS

    # -- the draws (each as golden.rng.Bits defines it) ---------------------------------------
    def uniform(self, stream: str, shape, at=None) -> np.ndarray:
        if at is not None or not self._large(shape, 1):
            return super().uniform(stream, shape, at)
        t = self.torch
        return self._device_map(stream, shape, 1,
                                lambda w: self._lsr(w, 11).to(t.float64) * 2.0**-53, np.float64)

    def signs(self, stream: str, shape, at=None) -> np.ndarray:
        if at is not None or not self._large(shape, 1):
            return super().signs(stream, shape, at)
        t = self.torch
        # top bit 1 (a negative int64) is +1.0; top bit 0 is -1.0
        return self._device_map(stream, shape, 1,
                                lambda w: t.where(w < 0, 1.0, -1.0).to(t.float64), np.float64)

    def normal(self, stream: str, shape) -> np.ndarray:
        if not self._large(shape, 6):
            return super().normal(stream, shape)
        t = self.torch

        def irwin_hall(w):  # the twelve 32-bit halves summed exactly in int64 (< 2**36)
            s = (w & 0xFFFFFFFF).sum(dim=1) + self._lsr(w, 32).sum(dim=1)
            return (s - (6 << 32)).to(t.float64) * 2.0**-32

        return self._device_map(stream, shape, 6, irwin_hall, np.float64)

    def choice_mask(self, stream: str, shape, p: float) -> np.ndarray:
        p = float(p)
        if not (0.0 <= p <= 1.0) or not self._large(shape, 1):
            return super().choice_mask(stream, shape, p)  # (it also rejects a bad p)
        limit = math.floor(p * 2.0**53)
        return self._device_map(stream, shape, 1, lambda w: self._lsr(w, 11) < limit, np.bool_)

    def integers(self, stream: str, shape, low: int, high: int) -> np.ndarray:
        low, high = operator.index(low), operator.index(high)
        r = high - low
        if not (-(1 << 63) <= low < high <= (1 << 63)) or r >= 1 << 32 \
                or not self._large(shape, 1):
            return super().integers(stream, shape, low, high)

        def mulhi_plus_low(w):  # floor(u * r / 2**64) + low, u's 32-bit limbs times r < 2**32
            lo, hi = w & 0xFFFFFFFF, self._lsr(w, 32)
            mid = hi * r + self._lsr(lo * r, 32)  # < 2**64: its bits, read logically
            return self._lsr(mid, 32) + low

        return self._device_map(stream, shape, 1, mulhi_plus_low, np.int64)


def draws_on(device: str):
    """A ``golden.cases.build`` draws factory: ``(key, seed) -> TorchBits(key, seed, device)``."""

    def make(key: str, seed: int) -> TorchBits:
        return TorchBits(key, seed, device)

    return make
