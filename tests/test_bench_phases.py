"""``conformance/bench_phases.py``: the phase events of a pytest run (controller and workers)
and the start / tests / end split and speed-up ceiling that ``bench xdist`` prints."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conformance.bench_phases import ENV, EVENTS, ceiling, phases, read_events

ROOT = Path(__file__).resolve().parent.parent


def _ev(who, event, wall, cpu):
    return {"who": who, "event": event, "wall": wall, "cpu": cpu}


def _parallel_events():
    """A controller and two workers: tests from 12 to 20 (gw0) and 12.5 to 21 (gw1)."""
    return [_ev("gw0", "tests_start", 12.0, 1.0), _ev("gw1", "tests_start", 12.5, 1.5),
            _ev("main", "tests_start", 12.1, 0.5), _ev("gw0", "tests_end", 20.0, 8.0),
            _ev("gw1", "tests_end", 21.0, 9.5), _ev("main", "tests_end", 21.1, 3.5),
            _ev("main", "done", 22.0, 4.5)]


def test_parallel_phases_split_at_the_first_and_last_worker():
    ph = phases(_parallel_events(), t0=10.0, t1=23.0)
    assert ph == pytest.approx({"start": 2.0, "tests": 9.0, "end": 2.0, "workers": 2,
                                "work": 7.0 + 8.0, "main_cpu": 3.0})


def test_serial_phases_are_the_main_process():
    ev = [_ev("main", "tests_start", 11.5, 1.2), _ev("main", "tests_end", 21.5, 14.2),
          _ev("main", "done", 22.5, 15.0)]
    ph = phases(ev, t0=10.0, t1=23.0)
    assert ph == pytest.approx({"start": 1.5, "tests": 10.0, "end": 1.5, "workers": 1,
                                "work": 13.0, "main_cpu": 0.0})


def test_ceiling_takes_the_workers_cpu_split_evenly():
    ser = {"start": 1.5, "tests": 10.0, "end": 1.5, "workers": 1, "work": 13.0, "main_cpu": 0}
    par = {"start": 2.0, "tests": 9.0, "end": 2.0, "workers": 2, "work": 15.0, "main_cpu": 3.0}
    assert ceiling(ser, par) == pytest.approx(13.0 / (2.0 + 7.5 + 2.0))
    assert ceiling(ser, par, report=False) == pytest.approx(11.5 / (2.0 + 7.5))


def test_a_run_without_events_names_what_is_missing():
    with pytest.raises(ValueError, match="no process recorded.*-p conformance.bench_phases"):
        phases([], 0.0, 1.0)
    with pytest.raises(ValueError, match="gw1:tests_end"):
        phases(_parallel_events()[:4], 0.0, 30.0)


def test_read_events_of_a_missing_file_is_empty(tmp_path):
    assert read_events(str(tmp_path / "none.jsonl")) == []


def test_every_process_of_an_xdist_run_records_its_phases(tmp_path):
    """A real ``-n 2`` smoke run with the plugin: the controller and both workers write the
    three events, in order, and the split adds up to the run's wall time."""
    events = tmp_path / "phases.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env[ENV] = str(events)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
           "conformance.bench_phases", "-n", "2", "--grid=smoke",
           f"--report-dir={tempfile.mkdtemp(prefix='fp8-report-')}", "conformance"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    t1 = time.time()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ev = read_events(str(events))
    seen = {}
    for e in ev:
        seen.setdefault(e["who"], []).append(e["event"])
    assert seen == {w: list(EVENTS) for w in ("main", "gw0", "gw1")}, seen
    ph = phases(ev, t0, t1)
    assert ph["workers"] == 2 and ph["work"] > 0 and ph["main_cpu"] >= 0
    assert ph["start"] > 0 and ph["tests"] > 0 and ph["end"] > 0
    assert ph["start"] + ph["tests"] + ph["end"] == pytest.approx(t1 - t0)


def test_bench_prints_the_split_and_ceiling_or_why_there_is_none(capsys):
    """``bench.print_xdist``: each run's phases and the ceiling; a run whose events are
    incomplete (a worker crashed and was replaced) prints why, and no ceiling."""
    from conformance.bench import print_xdist

    ser = {"start": 1.5, "tests": 10.0, "end": 1.5, "workers": 1, "work": 13.0, "main_cpu": 0}
    par = {"start": 2.0, "tests": 9.0, "end": 2.0, "workers": 2, "work": 15.0, "main_cpu": 3.0}

    def run(wall, ph):
        return {"wall": wall, "ran": 10, "tests": 12, "exit": 0, "phases": ph,
                "inputs": "case inputs: ...", "last": "10 passed, 2 skipped"}

    assert print_xdist({"-n 0": run(13.0, ser), "-n auto": run(13.0, par)}) == 1.0
    out = capsys.readouterr().out
    assert "start 2.00 s, tests 9.00 s (2 process(es) 15.0 CPU-s, controller 3.0 CPU-s)" in out
    assert f"costs nothing during the tests: {13.0 / 11.5:.2f}" in out
    assert f"no report or exit in either run: {11.5 / 9.5:.2f}" in out
    broken = {"error": "phase events missing (gw1:tests_end); ..."}
    assert print_xdist({"-n 0": run(13.0, ser), "-n auto": run(6.5, broken)}) == 2.0
    out = capsys.readouterr().out
    assert "phases: phase events missing (gw1:tests_end)" in out and "ceiling" not in out
