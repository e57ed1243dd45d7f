"""Benchmarks of the suite itself; figures are printed, never asserted.

    python -m conformance.bench reference [--top 2] [--m 8192]
    python -m conformance.bench golden [--grid default] [--backend B]
    python -m conformance.bench tracking [--grid default] [--backend B]

``reference``: for the largest (by FLOPs) shapes of the ``llm`` grid at M = ``--m``, the time
of the exact reference (``golden.matmul.scaled_mm_exact``: decode, exact GEMM, correct
rounding to bf16, per-token x per-channel scales) over the time of a bare float64 GEMM of the
same shape, measured in the same run (GEMM, reference, GEMM; the ratio uses the mean of the two
GEMMs). Target: 1.3 or less.

``golden``: wall time of ``pytest -n auto --grid=G`` reading the golden store over the same
run with ``--no-golden`` (every case computed), same backend, measured back to back.

``tracking``: the same with per-case tracking and the three report files over the same run
with the tracker blocked (``-p no:fp8-tracker``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from golden.matmul import scaled_mm_exact

from .matrix import llm_shapes


def _inputs(m: int, n: int, k: int):
    """Random finite e4m3fn codes and positive float32 scales (speed only: NumPy's RNG)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 0x7F, (m, k), dtype=np.uint8) | (rng.integers(0, 2, (m, k), dtype=np.uint8) << 7)
    b = rng.integers(0, 0x7F, (k, n), dtype=np.uint8) | (rng.integers(0, 2, (k, n), dtype=np.uint8) << 7)
    sa = (1 + rng.random(m)).astype(np.float32) / 256
    sb = (1 + rng.random(n)).astype(np.float32) / 256
    return a, b, sa, sb


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def bench_reference(top: int, m: int) -> list[dict]:
    shapes = sorted(llm_shapes(), key=lambda nk: nk[0] * nk[1], reverse=True)[:top]
    rows = []
    for n, k in shapes:
        a, b, sa, sb = _inputs(m, n, k)
        x = np.random.default_rng(1).standard_normal((m, k))
        w = np.random.default_rng(2).standard_normal((k, n))
        g1 = _timed(np.matmul, x, w)
        r = _timed(scaled_mm_exact, a, "e4m3fn", b, "e4m3fn", sa, sb, None, "bf16")
        g2 = _timed(np.matmul, x, w)
        gemm = (g1 + g2) / 2
        rows.append({"M": m, "N": n, "K": k, "gemm_s": gemm, "reference_s": r,
                     "ratio": r / gemm, "gflops": 2 * m * n * k / gemm / 1e9})
    return rows


def _timed_runs(grid: str, backend: str | None, variants) -> dict:
    """Wall seconds of ``pytest -n auto`` on ``grid`` for each ``(label, extra args)``, one
    after the other in this run (reports go to a temporary directory)."""
    times = {}
    with tempfile.TemporaryDirectory(prefix="fp8-bench-") as tmp:
        base = [sys.executable, "-m", "pytest", "-n", "auto", "-q", f"--grid={grid}",
                "-p", "no:randomly", f"--report-dir={tmp}"] + ([f"--backend={backend}"] if backend else [])
        for label, extra in variants:
            t0 = time.perf_counter()
            proc = subprocess.run(base + extra, capture_output=True, text=True)
            times[label] = time.perf_counter() - t0
            last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            print(f"  {label:>16}: {times[label]:7.1f} s   [{last.strip('= ')}] (exit {proc.returncode})")
            if proc.returncode not in (0, 1):
                raise SystemExit(f"pytest exited {proc.returncode}: {proc.stderr[-2000:]}")
    return times


def bench_golden(grid: str, backend: str | None) -> dict:
    """Wall seconds of the grid with and without the store (pytest in subprocesses)."""
    return _timed_runs(grid, backend, (("with store", []), ("without store", ["--no-golden"])))


def bench_tracking(grid: str, backend: str | None) -> dict:
    """Wall seconds of the grid with the tracker (records, timing, three report files) and
    with it blocked (``-p no:fp8-tracker``)."""
    return _timed_runs(grid, backend, (("with tracking", []),
                                       ("without tracking", ["-p", "no:fp8-tracker"])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("reference", help="reference time over a bare float64 GEMM")
    r.add_argument("--top", type=int, default=2, help="how many of the largest llm shapes")
    r.add_argument("--m", type=int, default=8192, help="M (tokens); the llm grid's largest is 8192")
    gs = sub.add_parser("golden", help="default grid with the golden store over without it")
    gs.add_argument("--grid", default="default")
    gs.add_argument("--backend", default=None, help="default: the best on this machine")
    tr = sub.add_parser("tracking", help="default grid with per-case tracking and reports over "
                                          "without them")
    tr.add_argument("--grid", default="default")
    tr.add_argument("--backend", default=None, help="default: the best on this machine")
    args = p.parse_args(argv)
    if args.what == "tracking":
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores; grid {args.grid}")
        t = bench_tracking(args.grid, args.backend)
        print(f"tracking ratio (with / without): {t['with tracking'] / t['without tracking']:.3f}")
        return 0
    if args.what == "golden":
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores; grid {args.grid}")
        t = bench_golden(args.grid, args.backend)
        ratio = t["with store"] / t["without store"]
        print(f"golden store ratio (with / without): {ratio:.3f}")
        return 0
    if args.top < 1 or args.m < 1:
        p.error(f"--top and --m must be positive (got --top={args.top}, --m={args.m})")

    print(f"machine: {platform.machine()} {platform.processor() or ''}, numpy {np.__version__}")
    rows = bench_reference(args.top, args.m)
    print(f"{'shape':>24} {'float64 GEMM s':>15} {'reference s':>12} {'GFLOP/s':>8} {'ratio':>6}")
    for row in rows:
        shape = f"{row['M']}x{row['N']}x{row['K']}"
        print(f"{shape:>24} {row['gemm_s']:15.2f} {row['reference_s']:12.2f} "
              f"{row['gflops']:8.1f} {row['ratio']:6.3f}")
    worst = max(row["ratio"] for row in rows)
    print(f"reference ratio (worst of {len(rows)}): {worst:.3f} (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
