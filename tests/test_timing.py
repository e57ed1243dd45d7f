"""``kernel.timing``: the kernel time a case records.

On cuda the timed calls are queued behind a spin kernel, so each pair of device events holds
the device's work and not the host's time between launches; the test gives the host a
millisecond of its own work before each launch of a microsecond kernel."""

from __future__ import annotations

import time

import pytest

from kernel.timing import median_seconds, queue_ahead, timed_call


def test_cpu_median_is_the_calls_wall_time():
    seconds = median_seconds(lambda: time.sleep(0.004), "cpu", reps=3)
    assert 0.004 <= seconds < 0.04, seconds


@pytest.mark.parametrize("reps", [0, -1])
def test_median_needs_a_timed_call(reps):
    with pytest.raises(ValueError, match=f"reps={reps}"):
        median_seconds(lambda: None, "cpu", reps=reps)


def test_timed_call_returns_the_result_and_holds_nothing_on_cpu():
    result, seconds = timed_call(lambda: 42, "cpu", reps=2)
    assert result == 42 and seconds >= 0
    assert queue_ahead("cpu", 0.01) is False


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no cuda device: the queue-ahead timing runs on cuda only")
    return torch


def test_cuda_events_time_the_kernel_not_the_hosts_gap():
    torch = _cuda()
    x = torch.zeros(1024, device="cuda")

    def call():
        time.sleep(0.001)  # the host's own work before the launch
        x.add_(1.0)

    seconds = median_seconds(call, "cuda", reps=5)
    assert seconds < 2e-4, f"{seconds * 1e6:.0f} us: the events held the host's 1 ms gap"


def test_cuda_hold_lasts_about_as_asked():
    torch = _cuda()
    queue_ahead("cuda", 0.001)  # measures the spin rate once
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    assert queue_ahead("cuda", 0.01) is True
    end.record()
    end.synchronize()
    assert 0.005 < start.elapsed_time(end) / 1e3 < 0.03
