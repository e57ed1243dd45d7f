"""``python -m conformance.mutants``: the suite's power, measured on kernels with known bugs.

Every case of a grid runs on each mutant of ``kernel.mutants`` (the reference with one bug,
claiming the fp32 profile) and on the correct kernels (the controls: the reference, judged
under the same fp32 claim, and torch on CPU where torch is installed). Each output is judged
twice over: by the suite (``conformance.checks.judge``, as ``test_scaled_mm`` does) and by each
anchor rule (``conformance.anchors``). A mutant is *killed* by a rule when the rule fails it on
at least one case; a control failed by a rule is a *false kill*.

How it runs, like ``pytest -n W``: W worker processes, each with its own instance of every
kernel, the grid's cases dealt round-robin in grid order (a stateful mutant sees its worker's
cases in that order, as in a pytest worker). Worker 0 then runs the mixed-granularity
sequences (``conformance/test_mixed_granularity.py``; not for ``smoke``, as in pytest) on the
same instances. A case's inputs and Y* are built once per worker for all kernels, read from the
golden store where it holds them. A mutant stops running in a worker once the suite and every
anchor rule have killed it there; the controls run every case. The probes
(``conformance/test_profile.py``) are not part of this measurement.

The last line is ``kill rate: X/Y``; the exit status is 1 when a control is failed by the suite
or the kill rate is below ``--require``, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from golden.bounds import get_profile
from golden.cases import GROUPED_SCHEMES, Case
from golden.store import Store, StoreError
from kernel.base import Unsupported
from kernel.mutants import MUTANTS, get_mutant
from kernel.registry import get_backend

from .anchors import ANCHOR_RULES, anchor_failures, anchor_references
from .checks import judge, rerun_command
from .matrix import GRANULARITY_ORDERS, granularity_cases, grid, grid_names
from .plugin import case_data, thread_share

__all__ = ["run_mutants", "main", "RULES", "CONTROLS"]

SUITE = "suite"
RULES = (SUITE,) + tuple(r.name for r in ANCHOR_RULES)
# control -> the profile it is judged under (None: its own). The reference is judged under the
# mutants' claim, so that its row is the no-bug row of the same judgement.
CONTROLS = {"reference": "fp32", "torch": None}
# the suite's checks that look at single elements (the rest are distribution checks)
ELEMENT_CHECKS = {"shape", "nan", "bound", "kernel-raised"}


class _Kernel:
    """One kernel under measurement in one worker: its adapter, its profile and its tallies."""

    def __init__(self, name: str, control: bool):
        self.name, self.control = name, control
        self.adapter = get_backend(name) if control else get_mutant(name)
        own = self.adapter.profile("cpu")
        self.profile = get_profile(CONTROLS[name]) if control and CONTROLS[name] else own
        self.run = self.skipped = 0
        self.failed = dict.fromkeys(RULES, 0)
        self.first: dict[str, dict] = {}
        self.checks: dict[str, int] = {}  # the suite's failed checks: cases per check

    def done(self) -> bool:
        return not self.control and len(self.first) == len(RULES)

    def judge(self, data, refs, pos: int, where: str) -> None:
        """Run this kernel on ``data`` and tally what each rule says (``refs``: the anchors'
        references, a :class:`_Refs` shared by the kernels of a case)."""
        try:
            out = self.adapter.run(data, "cpu")
        except Unsupported:
            self.skipped += 1
            return
        except Exception as exc:  # a crash fails the case for every rule, as in the suite
            failed = dict.fromkeys(RULES, f"kernel-raised ({type(exc).__name__}: {exc})"[:160])
        else:
            verdict = judge(data, out.values, self.profile)
            failed = {SUITE: ",".join(verdict.checks) if not verdict.passed else None}
            for check in verdict.checks:
                self.checks[check] = self.checks.get(check, 0) + 1
            failed.update({k: "tolerance" if v else None
                           for k, v in anchor_failures(data, out.values, refs.get()).items()})
        self.run += 1
        for rule, check in failed.items():
            if check:
                self.failed[rule] += 1
                if rule not in self.first:
                    self.first[rule] = {"pos": pos, "case": data.case.id, "where": where,
                                        "check": check}

    def result(self) -> dict:
        return {"run": self.run, "skipped": self.skipped, "failed": self.failed,
                "first": self.first, "checks": self.checks, "stopped": self.done()}


class _Refs:
    """The anchors' references of one case, computed on first use."""

    def __init__(self, data):
        self.data, self.refs = data, None

    def get(self) -> dict:
        if self.refs is None:
            self.refs = anchor_references(self.data)
        return self.refs


def _takes(kernel: _Kernel, case: Case) -> bool:
    """W8A8 cases the kernel supports (the mutants and the anchor rules are W8A8 only)."""
    return case.a not in GROUPED_SCHEMES and kernel.adapter.why_not(case, "cpu") is None


def _worker(job: dict) -> dict:
    """One worker's share: its grid cases in order, then (worker 0) the sequences."""
    w, workers = job["worker"], job["workers"]
    store = Store() if job["golden"] else None
    kernels = [_Kernel(n, True) for n in job["controls"]]
    kernels += [_Kernel(n, False) for n in job["mutants"]]
    cases = grid(job["grid"])
    for pos in range(w, len(cases), workers):
        case = cases[pos]
        todo = [k for k in kernels if not k.done() and _takes(k, case)]
        if not todo:
            continue
        data = case_data(case, job["seed"], store)
        refs = _Refs(data)
        for k in todo:
            k.judge(data, refs, pos, "grid")
    if w == 0 and job["sequences"]:
        pos = len(cases)
        mixed = granularity_cases(job["grid"])
        built: dict[Case, tuple] = {}  # each sequence case's data and references, built once

        def inputs(case: Case) -> tuple:
            if case not in built:
                data = case_data(case, job["seed"], store)
                built[case] = (data, _Refs(data))
            return built[case]

        for order, arrange in GRANULARITY_ORDERS.items():
            for k in kernels:
                for i, case in enumerate(arrange([c for c in mixed if _takes(k, c)])):
                    if not k.done():
                        k.judge(*inputs(case), pos + i, f"mixed-granularity {order} #{i}")
            pos += len(mixed)
    return {k.name: k.result() for k in kernels}


def _merge(parts: list[dict]) -> dict:
    """Per kernel: counts summed, each rule's first kill the earliest over workers."""
    merged: dict[str, dict] = {}
    for part in parts:
        for name, r in part.items():
            m = merged.setdefault(name, {"run": 0, "skipped": 0, "stopped": False,
                                         "failed": dict.fromkeys(RULES, 0), "first": {},
                                         "checks": {}})
            m["run"] += r["run"]
            m["skipped"] += r["skipped"]
            m["stopped"] = m["stopped"] or r["stopped"]
            for check, n in r["checks"].items():
                m["checks"][check] = m["checks"].get(check, 0) + n
            for rule in RULES:
                m["failed"][rule] += r["failed"][rule]
                f = r["first"].get(rule)
                if f and (rule not in m["first"] or f["pos"] < m["first"][rule]["pos"]):
                    m["first"][rule] = f
    return merged


def run_mutants(grid_name: str = "default", seed: int = 0, workers: int = 1,
                mutants=None, controls=None, golden: bool = True) -> dict:
    """Measure the suite and the anchor rules on ``mutants`` (default: all) and ``controls``
    (default: the reference, and torch where it runs on this CPU); a dict of results."""
    mutants = list(MUTANTS) if mutants is None else list(mutants)
    if controls is None:
        controls = ["reference"] + (["torch"] if _torch_runs() else [])
    cases = grid(grid_name)
    jobs = [{"worker": w, "workers": workers, "grid": grid_name, "seed": seed,
             "golden": golden, "mutants": mutants, "controls": controls,
             "sequences": grid_name != "smoke"} for w in range(workers)]
    t0 = time.perf_counter()
    if workers == 1:
        parts = [_worker(jobs[0])]
    else:
        thread_share(workers)  # as under pytest -n: a worker's share of the cores
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(_worker, jobs))
    return {"grid": grid_name, "seed": seed, "workers": workers, "golden": golden,
            "cases": len(cases), "w8a8_cases": sum(c.a not in GROUPED_SCHEMES for c in cases),
            "sequences": grid_name != "smoke", "mutants": mutants, "controls": controls,
            "results": _merge(parts), "wall_s": time.perf_counter() - t0}


def _torch_runs() -> bool:
    try:
        return "cpu" in get_backend("torch").devices()
    except Exception:
        return False


def _rerun(name: str, first: dict, grid_name: str, seed: int) -> str:
    """A shell line that reproduces a mutant's first kill by the suite."""
    backend = f"mutant:{name}"
    if first["where"].startswith("mixed-granularity"):
        return (f"pytest conformance/test_mixed_granularity.py --backend={backend} "
                f"--grid={grid_name} --seed={seed} -p no:randomly")
    if MUTANTS[name].stateful:  # it depends on the cases before it in its worker
        return (f"pytest conformance --backend={backend} --grid={grid_name} --seed={seed} "
                "-p no:randomly  (depends on earlier cases of the same shape)")
    return rerun_command(first["case"], backend, "cpu", seed)


def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]

    def fmt(row):
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def report_lines(res: dict) -> list[str]:
    """The printed report; its last line is ``kill rate: X/Y``."""
    results, mutants, controls = res["results"], res["mutants"], res["controls"]
    g, seed = res["grid"], res["seed"]
    seqs = " + mixed-granularity sequences" if res["sequences"] else ""
    lines = [f"mutants of the reference claiming the fp32 profile (kernel/mutants): {len(mutants)}",
             f"grid {g}: {res['cases']} cases ({res['w8a8_cases']} W8A8){seqs}; seed {seed}; "
             f"{'golden store' if res['golden'] else 'computed inputs'}; "
             f"{res['workers']} worker(s)", ""]
    rows = []
    for m in mutants:
        f = results[m]["first"].get(SUITE)
        rows.append([m, "yes" if f else "NO", f["check"] if f else "-",
                     (f["case"] + ("" if f["where"] == "grid" else f"  [{f['where']}]"))
                     if f else f"survived {results[m]['run']} cases"])
    lines += _table(rows, ["mutant", "killed", "check", "first killing case"])
    lines += ["", "reruns of the first kills:"]
    lines += [f"  {m}: {_rerun(m, results[m]['first'][SUITE], g, seed)}"
              for m in mutants if SUITE in results[m]["first"]]
    lines += ["", "kill rate by rule (same mutants, same cases, each rule against its reference):"]
    rows = []
    for rule in RULES:
        kills = sum(rule in results[m]["first"] for m in mutants)
        false = ", ".join(f"{c} {results[c]['failed'][rule]}/{results[c]['run']}"
                          for c in controls)
        rows.append([rule, f"{kills}/{len(mutants)}", false])
    lines += _table(rows, ["rule", "kills", "false kills (cases failed / run, per control)"])
    lines += ["", "which rule kills which mutant (x: killed):"]
    rows = [[m] + ["x" if r in results[m]["first"] else "." for r in RULES] for m in mutants]
    lines += _table(rows, ["mutant"] + list(RULES))
    quiet = [m for m in mutants if SUITE in results[m]["first"] and not results[m]["stopped"]
             and not set(results[m]["checks"]) & ELEMENT_CHECKS]
    if quiet:
        lines += ["", "killed with every element inside its bound on every case (only the "
                      "distribution checks see them; cases failed per check):"]
        lines += [f"  {m}: " + ", ".join(f"{c} {n}" for c, n in results[m]["checks"].items())
                  + f" of {results[m]['run']} cases" for m in quiet]
    killed = sum(SUITE in results[m]["first"] for m in mutants)
    pct = 100.0 * killed / len(mutants) if mutants else 0.0
    lines += ["", f"wall time: {res['wall_s']:.1f} s on this machine ({res['workers']} "
                  f"worker(s), {os.cpu_count()} CPUs)",
              f"kill rate: {killed}/{len(mutants)} ({pct:.0f}%)"]
    return lines


def markdown(res: dict) -> str:
    """The README's tables: each mutant's bug and first kill, and each rule's kill rate."""
    results, mutants, controls = res["results"], res["mutants"], res["controls"]

    def code(text: str) -> str:
        return "`" + text.replace("|", "\\|") + "`"

    out = ["| mutant | bug | killed by | first killing case |", "|---|---|---|---|"]
    for m in mutants:
        f = results[m]["first"].get(SUITE)
        where = "" if not f or f["where"] == "grid" else f" ({f['where']})"
        out.append(f"| `{m}` | {MUTANTS[m].bug} | {f['check'] if f else '**survived**'} | "
                   + (code(f["case"]) + where if f else "-") + " |")
    out += ["", "| rule | tolerance | reference | kill rate | false kills: "
            + ", ".join(controls) + " |", "|---|---|---|---|---|"]
    rules = [(SUITE, "profile bound + distribution checks", "exact Y*")]
    rules += [(r.name, r.tolerance, r.reference) for r in ANCHOR_RULES]
    for name, tol, ref in rules:
        kills = sum(name in results[m]["first"] for m in mutants)
        false = ", ".join(f"{results[c]['failed'][name]}/{results[c]['run']}" for c in controls)
        out.append(f"| {name} | {tol} | {ref} | {kills}/{len(mutants)} | {false} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.mutants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="default", help="case grid: " + ", ".join(grid_names()))
    p.add_argument("--seed", type=int, default=0, help="input seed (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: the CPU count)")
    p.add_argument("--mutant", action="append", metavar="NAME",
                   help="only this mutant (repeatable); default: all of " + ", ".join(MUTANTS))
    p.add_argument("--no-golden", dest="golden", action="store_false",
                   help="compute every case instead of reading the golden store")
    p.add_argument("--require", type=float, default=1.0, metavar="RATE",
                   help="exit 1 when the suite's kill rate is below RATE (default 1.0)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the README's tables")
    args = p.parse_args(argv)
    if args.grid not in grid_names():
        p.error(f"--grid={args.grid!r} is unknown; valid grids: {', '.join(grid_names())}")
    bad = [m for m in args.mutant or () if m not in MUTANTS]
    if bad:
        p.error(f"--mutant {', '.join(bad)}: unknown; mutants: {', '.join(MUTANTS)}")
    if args.workers < 1:
        p.error(f"--workers={args.workers}: must be at least 1")
    if not 0.0 <= args.require <= 1.0:
        p.error(f"--require={args.require}: must be a rate between 0 and 1")
    try:
        res = run_mutants(args.grid, args.seed, args.workers, args.mutant, golden=args.golden)
    except StoreError as exc:
        print(f"golden store: {exc} (or run with --no-golden)", file=sys.stderr)
        return 2
    print("\n".join(report_lines(res)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(markdown(res))
    false = [c for c in res["controls"] if res["results"][c]["failed"][SUITE]]
    for c in false:
        print(f"FALSE KILL: the suite failed the correct kernel {c!r} on "
              f"{res['results'][c]['failed'][SUITE]} case(s), first "
              f"{res['results'][c]['first'][SUITE]['case']}", file=sys.stderr)
    mutants = res["mutants"]
    rate = sum(SUITE in res["results"][m]["first"] for m in mutants) / max(len(mutants), 1)
    return 1 if false or rate < args.require else 0


if __name__ == "__main__":
    sys.exit(main())
