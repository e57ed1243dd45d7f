"""Where a pytest run's wall time goes, for ``python -m conformance.bench xdist``.

As a plugin (``-p conformance.bench_phases``, with ``FP8_PHASES`` naming a file), every process
of the run, the xdist controller and each worker, appends one JSON line per event: the
process (``main`` or the worker id), the event, the wall clock and the process's CPU seconds
(all its threads). Without the variable it records nothing.

    tests_start   the process's first test starts (on the controller under xdist: the first
                  report arrives)
    tests_end     session finish, before the tracker writes the report (tryfirst)
    done          unconfigure, after the report (trylast)

``phases`` turns one run's lines into start / tests / end seconds and the CPU each side used
during the tests; ``ceiling`` is the speed-up ``-n auto`` could reach if its controller cost
nothing during the tests and its workers split their measured CPU evenly: the serial run's
start + tests + end over the parallel run's start + worker CPU / workers + end (or both without
their end).
"""

from __future__ import annotations

import json
import os
import time

import pytest

ENV = "FP8_PHASES"
EVENTS = ("tests_start", "tests_end", "done")


def _who() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _record(event: str) -> None:
    """Append ``event`` for this process to the ``FP8_PHASES`` file (nothing without it)."""
    path = os.environ.get(ENV)
    if not path:
        return
    t = os.times()
    line = json.dumps({"who": _who(), "event": event, "wall": time.time(),
                       "cpu": t.user + t.system})
    with open(path, "a", encoding="utf-8") as f:  # one short write: lines stay whole
        f.write(line + "\n")


_started = False


def pytest_configure(config) -> None:
    """A new session in this process (pytest run in-process more than once) starts afresh."""
    global _started
    _started = False


def pytest_runtest_logstart(nodeid, location) -> None:
    """The first test of this process (or, on an xdist controller, its first report)."""
    global _started
    if not _started:
        _started = True
        _record("tests_start")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session) -> None:
    """The tests are over; the report is not written yet."""
    _record("tests_end")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """The report is written."""
    _record("done")


def read_events(path: str) -> list[dict]:
    """The file's events; a missing file is no events."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def phases(events: list[dict], t0: float, t1: float) -> dict:
    """One run's phases from its events, ``t0`` and ``t1`` the wall clock around the command:

    ``start`` (to the first test of any test-running process), ``tests`` (to the last one's
    session finish), ``end`` (to the command's exit: report, shutdown), ``workers`` (how many
    processes ran tests: the workers, or the main process alone), ``work`` (their CPU seconds
    during their tests, summed) and ``main_cpu`` (the xdist controller's CPU seconds over the
    tests phase; 0 without workers). A run whose processes recorded no tests is a ValueError
    naming what is missing."""
    by = {}
    for e in events:
        by.setdefault(e["who"], {})[e["event"]] = e
    runners = {w: ev for w, ev in by.items() if w != "main"} or by  # workers, else main
    missing = sorted(f"{w}:{name}" for w, ev in runners.items() for name in EVENTS[:2]
                     if name not in ev)
    if not runners or missing:
        raise ValueError(f"phase events missing ({', '.join(missing) or 'no process recorded'}); "
                         f"was the run given -p conformance.bench_phases and {ENV}?")
    first = min(ev["tests_start"]["wall"] for ev in runners.values())
    last = max(ev["tests_end"]["wall"] for ev in runners.values())
    work = sum(ev["tests_end"]["cpu"] - ev["tests_start"]["cpu"] for ev in runners.values())
    main_cpu = 0.0
    main = by.get("main", {})
    if "main" not in runners and "tests_start" in main and "tests_end" in main:
        main_cpu = main["tests_end"]["cpu"] - main["tests_start"]["cpu"]
    return {"start": first - t0, "tests": last - first, "end": t1 - last,
            "workers": len(runners), "work": work, "main_cpu": main_cpu}


def ceiling(serial: dict, parallel: dict, report: bool = True) -> float:
    """The speed-up ``-n auto`` could reach with a controller that costs nothing during the
    tests and workers that split their measured CPU evenly: the serial run's wall time over
    the parallel run's start + work / workers + end; with ``report=False``, both runs
    without their ``end`` (report and exit), as if that cost nothing either."""
    s = serial["start"] + serial["tests"] + (serial["end"] if report else 0.0)
    p = parallel["start"] + parallel["work"] / parallel["workers"] + (
        parallel["end"] if report else 0.0)
    return s / p
