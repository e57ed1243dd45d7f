"""Counter-based random bits that give the same bytes on any NumPy version, platform and order.

Element ``i`` of stream ``s`` of ``Bits(key, seed)`` is ``splitmix64(k_s + (i + 1) * GAMMA)``,
the i-th output of Vigna's SplitMix64 generator seeded with ``k_s``, where ``k_s`` is the first
8 bytes (little-endian) of a BLAKE2b digest of ``(key, seed, s)``. Nothing depends on earlier
draws, on other streams or on ``np.random``; every value mapping below is integer arithmetic
followed by at most one IEEE rounding, so no libm function (log, cos, ...) is involved.

Different methods called with the same stream name read the same counters; callers give each
quantity its own stream name.
"""

from __future__ import annotations

import hashlib
import math
import operator
import threading
from types import SimpleNamespace

import numpy as np

from .parallel import MIN_CHUNKS, map_ordered

__all__ = ["Bits", "SPLITMIX64", "draw_shape", "splitmix64", "stream_key"]

SPLITMIX64 = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
"""SplitMix64's increment (gamma) and its two mixing multipliers, as Python ints."""

_U64 = np.uint64
_GAMMA, _MUL1, _MUL2 = (_U64(c) for c in SPLITMIX64)
_S27, _S30, _S31, _S32 = _U64(27), _U64(30), _U64(31), _U64(32)
_S11 = _U64(11)
_LO32 = _U64(0xFFFFFFFF)

CHUNK = 1 << 16
"""Raw words generated per pass (keeps temporaries in cache; results do not depend on it)."""

_PERSON = b"golden.rng.v1"


def stream_key(key: str, seed: int, stream: str) -> int:
    """64-bit key of one stream: BLAKE2b-64 of the length-prefixed UTF-8 parts."""
    msg = b""
    for part in (str(key), str(operator.index(seed)), str(stream)):
        raw = part.encode("utf-8")
        msg += len(raw).to_bytes(8, "little") + raw
    digest = hashlib.blake2b(msg, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "little")


def splitmix64(skey: int, start: int, count: int) -> np.ndarray:
    """Outputs ``start .. start+count-1`` of SplitMix64 seeded with ``skey`` (uint64 array)."""
    out = np.empty(count, _U64)
    for lo in range(0, count, CHUNK):
        hi = min(count, lo + CHUNK)
        out[lo:hi] = _splitmix_chunk(skey, start + lo, hi - lo)
    return out


def _splitmix_chunk(skey: int, start: int, count: int) -> np.ndarray:
    """``splitmix64(skey, start, count)`` for ``count <= CHUNK``, computed in this thread's
    scratch buffers and returned as a view of them (valid until the next call): fresh
    half-megabyte temporaries cost more in page faults than the arithmetic."""
    ws = _scratch()
    z, t = ws.raw[:count], ws.tmp[:count]
    with np.errstate(over="ignore"):
        # (start + j) * GAMMA + skey for counters j = 1 .. count, modulo 2**64, as
        # j * GAMMA (kept in the scratch) plus one constant: one pass instead of three
        np.add(ws.iota_gamma[:count], _U64((start * int(_GAMMA) + skey) % (1 << 64)), out=z)
        _mix(z, t)
    return z


def _mix(z: np.ndarray, t: np.ndarray) -> None:
    """SplitMix64's output mix of the states ``z``, in place (``t``: scratch of z's size)."""
    z ^= np.right_shift(z, _S30, out=t)
    z *= _MUL1
    z ^= np.right_shift(z, _S27, out=t)
    z *= _MUL2
    z ^= np.right_shift(z, _S31, out=t)


_local = threading.local()


def _scratch():
    """This thread's buffers of CHUNK words: ``iota_gamma`` (j * GAMMA modulo 2**64 for
    j = 1 .. CHUNK), ``raw`` and ``tmp``."""
    ws = getattr(_local, "ws", None)
    if ws is None or len(ws.raw) != CHUNK:  # first use in this thread, or CHUNK changed
        with np.errstate(over="ignore"):
            iota_gamma = np.arange(1, CHUNK + 1, dtype=_U64) * _GAMMA
        ws = _local.ws = SimpleNamespace(iota_gamma=iota_gamma, raw=np.empty(CHUNK, _U64),
                                         tmp=np.empty(CHUNK, _U64))
    return ws


def draw_shape(shape) -> tuple[int, ...]:
    """A draw's shape as a tuple of ints (an int is a 1-D shape); a negative dimension raises."""
    if type(shape) is tuple and all(type(s) is int and s >= 0 for s in shape):
        return shape  # the common call, checked cheaply
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(operator.index(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


class Bits:
    """Deterministic bits for one case: ``Bits(case_key, seed)``; each draw names a stream."""

    def __init__(self, key: str, seed: int):
        self.key = str(key)
        self.seed = operator.index(seed)

    def __repr__(self) -> str:
        return f"Bits({self.key!r}, {self.seed})"

    def _key(self, stream: str) -> int:
        return stream_key(self.key, self.seed, stream)

    def _map(self, stream: str, shape, per: int, fn, dtype, at=None) -> np.ndarray:
        """Apply ``fn`` to ``per`` raw words per element, chunk by chunk, into a new array;
        with ``at``, only at those elements (see :meth:`_map_at`)."""
        shape = draw_shape(shape)
        n = math.prod(shape)
        skey = self._key(stream)
        if at is not None:
            return _map_at(skey, n, at, fn, dtype)
        out = np.empty(n, dtype=dtype)
        step = max(1, CHUNK // per)

        def piece(lo: int) -> None:  # chunks are independent: any thread, any order
            hi = min(n, lo + step)
            raw = _splitmix_chunk(skey, lo * per, (hi - lo) * per)  # scratch: fn may write it
            out[lo:hi] = fn(raw.reshape(hi - lo, per) if per > 1 else raw)

        if n <= step:  # one chunk (most draws): straight in, no pool
            piece(0)
        else:
            map_ordered(piece, range(0, n, step), min_items=MIN_CHUNKS)
        return out.reshape(shape)

    def uint64(self, stream: str, n: int) -> np.ndarray:
        """``n`` raw uint64 words of ``stream``."""
        return self._map(stream, (operator.index(n),), 1, lambda r: r, _U64)

    def uniform(self, stream: str, shape, at=None) -> np.ndarray:
        """float64 in [0, 1): the top 53 bits ``k`` of a word, as ``k * 2**-53`` (exact).

        ``at`` (flat element indices into ``shape``): only those elements of the draw, in
        ``at``'s order, without computing the rest (what ``uniform(...).ravel()[at]`` gives).
        """
        return self._map(stream, shape, 1, _uniform53, np.float64, at)

    def signs(self, stream: str, shape, at=None) -> np.ndarray:
        """float64 +-1.0 with equal probability: -1.0 exactly where
        ``choice_mask(stream, shape, 0.5)`` is True (the word's top bit is 0). ``at`` as in
        :meth:`uniform`."""
        return self._map(stream, shape, 1, _sign_of_top_bit, np.float64, at)

    def normal(self, stream: str, shape) -> np.ndarray:
        """Approximately standard normal, exactly computed: Irwin-Hall sum of 12 uniforms.

        Each element uses 6 words = twelve 32-bit integers ``u_j``; the value is
        ``(sum u_j - 6 * 2**32) * 2**-32``, every step exact (mean 0, variance 1 - 2**-64,
        support (-6, 6)).
        """
        return self._map(stream, shape, 6, _irwin_hall12, np.float64)

    def integers(self, stream: str, shape, low: int, high: int) -> np.ndarray:
        """int64 in ``[low, high)`` by multiply-shift (floor(u * r / 2**64); bias <= r / 2**64)."""
        low, high = operator.index(low), operator.index(high)
        if not -(1 << 63) <= low < high <= (1 << 63):
            raise ValueError(f"integers needs -2**63 <= low < high <= 2**63, got [{low}, {high})")
        r = high - low
        base = _U64(low % (1 << 64))

        def fn(u):
            with np.errstate(over="ignore"):
                h = u if r == 1 << 64 else _mulhi(u, r)
                return (h + base).view(np.int64)

        return self._map(stream, shape, 1, fn, np.int64)

    def choice_mask(self, stream: str, shape, p: float) -> np.ndarray:
        """bool array, True with probability ``p`` (top 53 bits compared with floor(p * 2**53))."""
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        t = _U64(math.floor(p * 2.0**53))
        return self._map(stream, shape, 1, lambda u: (u >> _S11) < t, np.bool_)


def _map_at(skey: int, n: int, at, fn, dtype) -> np.ndarray:
    """``fn`` of the words of elements ``at`` (flat indices below ``n``) of a one-word-per-
    element stream: word ``i`` is SplitMix64's output ``i`` (the mix of ``skey + (i+1) GAMMA``),
    however the full draw would be chunked."""
    at = np.asarray(at)
    if at.ndim != 1 or at.dtype.kind not in "iu":
        raise TypeError(f"at must be a 1-D integer array of element indices, got {at.dtype} "
                        f"with shape {at.shape}")
    if at.size and (int(at.min()) < 0 or int(at.max()) >= n):
        raise ValueError(f"at holds index {int(at.min()) if at.min() < 0 else int(at.max())} "
                         f"outside the draw's {n} elements")
    with np.errstate(over="ignore"):
        z = at.astype(_U64) * _GAMMA
        z += _U64((int(_GAMMA) + skey) % (1 << 64))
        _mix(z, np.empty_like(z))
    return fn(z).astype(dtype, copy=False)


def _uniform53(u: np.ndarray) -> np.ndarray:
    return (u >> _S11).astype(np.int64).astype(np.float64) * 2.0**-53


_ONE_BITS = _U64(0x3FF0_0000_0000_0000)  # float64 1.0
_SIGN_BIT = _U64(1 << 63)


def _sign_of_top_bit(u: np.ndarray) -> np.ndarray:
    """+1.0 where ``u``'s top bit is 1, -1.0 where it is 0: 1.0's bits with the sign bit set
    from the complement of the top bit (may overwrite ``u``)."""
    np.invert(u, out=u)
    u &= _SIGN_BIT
    u |= _ONE_BITS
    return u.view(np.float64)


_ONES12 = np.ones(12)


def _irwin_hall12(w: np.ndarray) -> np.ndarray:
    """``(sum of the twelve 32-bit halves of each row's 6 words - 6 * 2**32) * 2**-32``.

    The halves are summed as float64 by a matrix-vector product with ones (twice as fast as
    eleven strided integer adds): every partial sum is an integer below 12 * 2**32 < 2**53,
    so it is exact in any order, and the subtraction and power-of-two scaling are exact too:
    the same bits as integer arithmetic."""
    u = w.view(np.uint32).reshape(len(w), 12).astype(np.float64)  # the halves, in any order
    s = u @ _ONES12
    s -= float(6 << 32)
    s *= 2.0**-32
    return s


def _mulhi(u: np.ndarray, r: int) -> np.ndarray:
    """High 64 bits of the 128-bit product ``u * r`` (``r < 2**64``), via 32-bit limbs."""
    rl, rh = _U64(r & 0xFFFFFFFF), _U64(r >> 32)
    ul, uh = u & _LO32, u >> _S32
    t = ul * rl
    if r < 1 << 32:  # same result, fewer passes
        t >>= _S32
        uh *= rl
        uh += t
        return uh >> _S32
    t = uh * rl + (t >> _S32)
    w1, w2 = t & _LO32, t >> _S32
    t = ul * rh + w1
    return uh * rh + w2 + (t >> _S32)
