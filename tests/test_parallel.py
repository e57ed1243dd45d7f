"""``golden.parallel``: the thread count a process takes, and ordered maps on threads."""

from __future__ import annotations

import threading

import pytest

from golden.parallel import MAX_THREADS, MIN_CHUNKS, map_ordered, threads, workers


@pytest.mark.parametrize("value, want", [("3", 3), (" 2 ", 2), ("1", 1)])
def test_threads_follow_omp_num_threads(monkeypatch, value, want):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert threads() == want


@pytest.mark.parametrize("value", [None, "", "0", "-2", "four"])
def test_threads_default_to_the_cores_this_process_may_use(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert threads() >= 1


def test_map_ordered_keeps_order_runs_on_threads_and_never_nests(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    seen = set()

    def piece(i):
        seen.add(threading.current_thread().name)
        inner = map_ordered(lambda j: j * 10, range(3))  # inside a piece: serial, no deadlock
        return i, inner

    out = map_ordered(piece, range(40))
    assert out == [(i, [0, 10, 20]) for i in range(40)]
    assert any(name.startswith("golden") for name in seen)
    main = threading.main_thread().name
    assert map_ordered(lambda i: threading.current_thread().name, range(5), min_items=6) == [
        main] * 5  # fewer items than min_items: serial
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert map_ordered(lambda i: threading.current_thread().name, range(5)) == [main] * 5


def test_workers_is_the_thread_count_map_ordered_uses(monkeypatch):
    """``workers()``: the thread count, at most MAX_THREADS, and 1 inside a piece."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert workers() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", str(MAX_THREADS + 5))
    assert workers() == MAX_THREADS
    assert set(map_ordered(lambda i: workers(), range(8))) == {1}


def _on_1_and_4_threads(monkeypatch, module, call) -> tuple[dict, list]:
    """``call()`` with OMP_NUM_THREADS 1 then 4, and the piece counts ``module`` handed to
    ``map_ordered`` (proof the threaded path ran)."""
    maps = []
    monkeypatch.setattr(module, "map_ordered", lambda fn, items, **kw: maps.append(len(items))
                        or map_ordered(fn, items, **kw))
    out = {}
    for threads_ in ("1", "4"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads_)
        out[threads_] = call()
    return out, maps


@pytest.mark.parametrize("draw", ["uint64", "normal", "integers"])
def test_a_threaded_draw_has_the_bits_of_a_serial_one(monkeypatch, draw):
    """Draws of MIN_CHUNKS chunks or more run on threads: the same bits as on one."""
    import numpy as np

    from golden import rng

    per = 6 if draw == "normal" else 1  # words per value
    n = MIN_CHUNKS * (rng.CHUNK // per) + 5
    args = {"uint64": (n,), "normal": ((n,),), "integers": ((n,), -7, 1 << 40)}[draw]
    out, maps = _on_1_and_4_threads(
        monkeypatch, rng, lambda: getattr(rng.Bits("case", 3), draw)("s", *args))
    assert maps == [MIN_CHUNKS + 1] * 2
    assert np.array_equal(out["1"].view(np.uint64), out["4"].view(np.uint64))


def test_a_threaded_encode_has_the_codes_of_a_serial_one(monkeypatch):
    """An encode of MIN_CHUNKS pieces or more runs them on threads: the same codes."""
    import numpy as np

    from golden import codecs
    from golden.rng import Bits

    n = MIN_CHUNKS * codecs.ENCODE_CHUNK + 7
    x = Bits("case", 5).normal("x", (n,)) * 300.0  # past e4m3's 448: saturation too
    x[::1001] = np.nan
    out, maps = _on_1_and_4_threads(
        monkeypatch, codecs, lambda: codecs.encode(x, "e4m3fn", "saturate"))
    assert maps == [MIN_CHUNKS + 1] * 2
    assert np.array_equal(out["1"], out["4"])
    assert np.array_equal(out["4"], codecs._encode(x, codecs.get_format("e4m3fn"), "saturate"))


@pytest.mark.parametrize("bias", [False, True])
def test_a_threaded_rounding_has_the_bits_of_a_serial_one(monkeypatch, bias):
    """The exact reference's rounding (``golden.matmul._round_single``) of more than
    ``_ROUND_BLOCK`` outputs, in a block of chunks per thread: the bits of one thread, and of
    the general path (the correct rounding), with per-row and per-column scales, a bias,
    zeros, overflow, ties and subnormals in the data."""
    import numpy as np

    from golden import matmul
    from golden.formats import get_format
    from golden.rng import Bits

    m, n = 203, 96
    monkeypatch.setattr(matmul, "_CHUNK", 512)  # 5 rows a chunk
    monkeypatch.setattr(matmul, "_ROUND_BLOCK", 4 * 512)
    bits = Bits("round", 1)
    s = np.round(bits.normal("s", (m, n)) * 2.0**30)
    s[::7, ::5] = 0.0
    s[3, :4] = [2.0**140, -(2.0**140), 1.5 * 2.0**30 + 0.5, 2.0**31 + 2.0**23]  # overflow, ties
    s[[77, 150], :8] = np.arange(1, 17, 2) * 2.0**-100  # bf16 subnormals past the first block
    sa = (1 + bits.uniform("sa", (m, 1))).astype(np.float32).astype(np.float64) / 2**20
    sb = (1 + bits.uniform("sb", (1, n))).astype(np.float32).astype(np.float64) / 2**10
    c = (bits.normal("c", (1, n)) * 2.0**-8) if bias else np.zeros((1, 1))
    out = get_format("bf16")
    want = matmul._round_general([s], sa, sb, c, out, (m, n))
    got, maps = _on_1_and_4_threads(
        monkeypatch, matmul, lambda: matmul._round_single(s.copy(), sa, sb, c, out, (m, n)))
    assert maps == [1, 4]  # blocks: one, then one per thread
    assert np.array_equal(got["1"].view(np.uint64), got["4"].view(np.uint64))
    assert np.array_equal(got["4"].view(np.uint64), want.view(np.uint64))
