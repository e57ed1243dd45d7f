"""Kernel timing: the median of repeated, device-synchronized calls after a warm-up.

On cuda and xpu each call is bracketed by device events (``torch.cuda.Event`` /
``torch.xpu.Event``), so the figure is device time, not host launch time; on cpu by
``time.perf_counter`` around the call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["median_seconds", "timed_call"]


def timed_call(call: Callable[[], object], device: str, reps: int) -> tuple[object, float]:
    """``(result, seconds)`` of one synchronized call of ``call``; with ``reps`` > 0 that call
    is the warm-up and the seconds are the median of ``reps`` more (:func:`median_seconds`)."""
    sync = lambda: None  # noqa: E731
    if device in ("cuda", "xpu"):
        import torch

        sync = getattr(torch, device).synchronize
    sync()
    t0 = time.perf_counter()
    result = call()
    sync()
    seconds = time.perf_counter() - t0
    if reps:
        seconds = median_seconds(call, device, reps, warmup=0)
    return result, seconds


def median_seconds(call: Callable[[], object], device: str, reps: int, warmup: int = 1) -> float:
    """Median seconds of ``reps`` calls of ``call`` on ``device`` after ``warmup`` untimed ones."""
    if reps < 1:
        raise ValueError(f"reps={reps!r}: need at least one timed call")
    for _ in range(warmup):
        call()
    if device in ("cuda", "xpu"):
        import torch

        mod = getattr(torch, device)
        mod.synchronize()
        pairs = []
        for _ in range(reps):
            start, end = mod.Event(enable_timing=True), mod.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            pairs.append((start, end))
        mod.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in pairs) / 1e3
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
