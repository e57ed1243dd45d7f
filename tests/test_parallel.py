"""``golden.parallel``: the thread count a process takes, and ordered maps on threads."""

from __future__ import annotations

import threading

import pytest

from golden.parallel import map_ordered, threads


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
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert map_ordered(lambda i: threading.current_thread().name, range(5)) == [
        threading.main_thread().name] * 5
