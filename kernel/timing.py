"""Kernel timing: the median of repeated, device-synchronized calls after a warm-up.

On cuda and xpu each call is bracketed by device events (``torch.cuda.Event`` /
``torch.xpu.Event``), so the figure is device time; on cpu by ``time.perf_counter`` around
the call.

On cuda the timed calls are first queued behind a spin kernel (``queue_ahead``): the device
then runs them back to back and each pair of events brackets the kernel alone. Without it,
an event pair also held the device's wait for the host to launch the call (measured on an
H100: 33 x 4096 x 14336 read 0.09 to 0.96 of a standalone benchmark's TFLOP/s from run to
run). xpu has no such spin kernel in torch: there the events are recorded as the calls go.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["median_seconds", "timed_call", "queue_ahead", "hold_for"]

_SPIN_HZ: dict[int, float] = {}  # torch.cuda._sleep cycles per second, per device index
_HOLD_MAX_S = 0.05


def _spin_hz(torch) -> float:
    """Cycles per second of ``torch.cuda._sleep`` on the current device (measured once)."""
    dev = torch.cuda.current_device()
    if dev not in _SPIN_HZ:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)  # load the kernel before timing it
        start.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
        _SPIN_HZ[dev] = 2_000_000 / max(start.elapsed_time(end) / 1e3, 1e-6)
    return _SPIN_HZ[dev]


def queue_ahead(device: str, seconds: float) -> bool:
    """Keep ``device``'s current stream busy for about ``seconds`` (at most 50 ms), so that what
    the host queues meanwhile runs back to back. False (and nothing done) on a device without
    a spin kernel: only cuda has one."""
    if device != "cuda":
        return False
    import torch

    if not hasattr(torch.cuda, "_sleep"):
        return False
    torch.cuda._sleep(max(1, int(min(seconds, _HOLD_MAX_S) * _spin_hz(torch))))
    return True


def hold_for(call: Callable[[], object], device: str, calls: int) -> float:
    """Seconds of hold (``queue_ahead``) that cover the host queueing ``calls`` calls of
    ``call``: twice its time for one call, timed here between synchronizations (plus the
    device's time, where the call waits for it), plus 0.1 ms."""
    import torch

    mod = getattr(torch, device)
    mod.synchronize()
    t0 = time.perf_counter()
    call()
    host = time.perf_counter() - t0
    mod.synchronize()
    return 2 * calls * host + 1e-4


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
        hold = hold_for(call, device, reps)
        for _ in range(3):  # a hold the device outran is doubled, twice at most
            held = queue_ahead(device, hold)
            pairs = []
            for _ in range(reps):
                start, end = mod.Event(enable_timing=True), mod.Event(enable_timing=True)
                start.record()
                call()
                end.record()
                pairs.append((start, end))
            # The device already at the last call when the host is done queueing: it may
            # have waited for the host on the way, inside an event pair.
            caught_up = held and pairs[-1][0].query()
            mod.synchronize()
            if not caught_up or hold >= _HOLD_MAX_S:
                break
            hold *= 2
        return statistics.median(s.elapsed_time(e) for s, e in pairs) / 1e3
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
