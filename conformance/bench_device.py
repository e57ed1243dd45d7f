"""The accelerator figures of ``python -m conformance.bench`` (cuda or xpu).

``overhead``: per ``llm`` case, the test's own steps (``plugin.case_data``, the adapter's run
with its timing calls, the judge) timed one by one, as ``conformance/test_scaled_mm.py`` runs
them. *Kernel* is the device time of its calls (the warm-up and ``reps`` timed calls, each the
median); *reference* the exact reference's own time (``CaseData.extra["reference_s"]``: Y* and
sum|A||B|); *overhead* the rest of the case's wall time (inputs, transfers, the judge). Each reference
variant first runs one case untimed (one-time set-up).

``fidelity``: the suite's TFLOP/s (the adapter's median of per-call device events) against a
standalone benchmark of the same ``torch._scaled_mm`` call with the same tensors: device events
around ``loop`` back-to-back calls after a warm-up. On cuda both queue their calls behind a
spin kernel (``kernel.timing.queue_ahead``), so both time the device, not the host's launches.
"""

from __future__ import annotations

from golden.cases import Case
from kernel.timing import hold_for, queue_ahead

from .bench import target
from .matrix import LLM_M, llm_shapes

__all__ = ["overhead_cases", "fidelity_cases", "bench_overhead", "bench_fidelity",
           "standalone_seconds", "print_overhead", "print_fidelity"]


FIDELITY_CASES = (  # (M, N, K, per-tensor scales?): DESIGN §10's 8192^3, llm shapes, small M
    (8192, 8192, 8192, True), (8192, 28672, 4096, False), (1023, 6144, 4096, False),
    (33, 4096, 14336, False), (1, 4096, 4096, False))


def fidelity_cases() -> list[Case]:
    return [Case(M=m, N=n, K=k, w="tensor", a="tensor", sa="[]", sb="[]") if pt else
            Case(M=m, N=n, K=k, w="channel", a="token", sa="[M,1]", sb="[1,N]")
            for m, n, k, pt in FIDELITY_CASES]


def overhead_cases(ms=(1, 33, 1023, 8192), shapes=None) -> list[Case]:
    """``llm``-grid cases (per-token x per-channel); by default Llama-3.1-8B's qkv and o
    projections (6144 x 4096, 4096 x 4096) at four M (the whole grid's NumPy inputs and judge
    take longer than a device call may run)."""
    shapes = shapes or llm_shapes()[:2]
    assert set(ms) <= set(LLM_M), ms
    return [Case(M=m, N=n, K=k, w="channel", a="token", sa="[M,1]", sb="[1,N]", dataset="gauss")
            for (n, k) in shapes for m in ms]


def bench_overhead(adapter, device: str, cases, reps: int, dot) -> list[dict]:
    """Per case: total, kernel, reference and overhead seconds (see the module docstring),
    after one untimed run of the first case: the one-time set-up of the device's kernels and
    the reference's tables is paid once a run, not once a case (on the H100 the first
    case's inputs took 0.41 s without it, 0.14 s after it)."""
    from .bench import time_case

    if cases:
        time_case(adapter, device, cases[0], None, dot, 0)
    rows = []
    for c in cases:
        r = time_case(adapter, device, c, None, dot, reps)
        kernel = r["run"].seconds * (reps + 1)
        ref = r["data"].extra["reference_s"]
        total = r["data_s"] + r["run_s"] + r["judge_s"]
        rows.append({"case": c, "total": total, "kernel": kernel, "reference": ref,
                     "inputs": r["data_s"] - ref, "run": r["run_s"], "judge": r["judge_s"],
                     "overhead": total - kernel - ref, "passed": r["verdict"].passed})
    return rows


def standalone_seconds(kw: dict, device: str, loop: int = 50, warmup: int = 10) -> float:
    """Seconds per ``torch._scaled_mm(**kw)`` call: device events around ``loop`` calls,
    queued behind a hold (``kernel.timing.queue_ahead``, cuda) as the suite's are, so both
    time the device's work and neither the host's launches."""
    import torch

    mod = getattr(torch, device)
    for _ in range(warmup):
        torch._scaled_mm(**kw)
    queue_ahead(device, hold_for(lambda: torch._scaled_mm(**kw), device, loop))
    start, end = mod.Event(enable_timing=True), mod.Event(enable_timing=True)
    start.record()
    for _ in range(loop):
        torch._scaled_mm(**kw)
    end.record()
    mod.synchronize()
    return start.elapsed_time(end) / 1e3 / loop


def bench_fidelity(adapter, device: str, cases, reps: int) -> list[dict]:
    """Per case: the suite's TFLOP/s (``adapter.run``) and the standalone benchmark's, on the
    same tensors (``adapter.inputs``); their ratio."""
    from golden.cases import build

    rows = []
    for c in cases:
        data = build(c, 0, with_bound=False)
        suite = adapter.run(data, device, reps=reps).seconds  # the figure a case records
        alone = standalone_seconds(adapter.inputs(data, device), device)
        flops = 2 * c.M * c.N * c.K
        rows.append({"case": c, "suite_s": suite, "alone_s": alone,
                     "suite_tflops": flops / suite / 1e12, "alone_tflops": flops / alone / 1e12,
                     "ratio": alone / suite})
    return rows


def print_overhead(rows: list[dict], label: str) -> float:
    """One line per case and the overall ratio: overhead / (kernel + reference)."""
    print(f"  reference {label}:")
    print(f"  {'M x N x K':>20} {'total s':>8} {'kernel s':>9} {'ref s':>7} {'inputs s':>8} "
          f"{'run s':>7} {'judge s':>7} {'overhead':>9}")
    for r in rows:
        c = r["case"]
        share = r["overhead"] / (r["kernel"] + r["reference"])
        print(f"  {f'{c.M}x{c.N}x{c.K}':>20} {r['total']:8.3f} {r['kernel']:9.5f} "
              f"{r['reference']:7.3f} {r['inputs']:8.3f} {r['run']:7.3f} {r['judge']:7.3f} "
              f"{share:9.2f}")
    over = sum(r["overhead"] for r in rows)
    base = sum(r["kernel"] + r["reference"] for r in rows)
    ratio = over / base
    print(f"suite overhead, reference {label}: {over:.1f} s over kernel + reference "
          f"{base:.1f} s = {ratio:.2f} ({target('overhead')}); {sum(r['passed'] for r in rows)}/"
          f"{len(rows)} cases passed")
    return ratio


def print_fidelity(rows: list[dict]) -> float:
    print(f"  {'M x N x K':>20} {'suite TFLOP/s':>14} {'standalone':>11} {'ratio':>6}")
    for r in rows:
        c = r["case"]
        print(f"  {f'{c.M}x{c.N}x{c.K}':>20} {r['suite_tflops']:14.1f} {r['alone_tflops']:11.1f} "
              f"{r['ratio']:6.3f}")
    big = [r for r in rows if 2 * r["case"].M * r["case"].N * r["case"].K >= 1e11]
    worst = max(abs(1 - r["ratio"]) for r in (big or rows))
    print(f"throughput fidelity (suite / standalone - 1, worst over {len(big or rows)} cases of "
          f">= 0.1 TFLOP): {worst:.3f} ({target('fidelity')})")
    return worst
