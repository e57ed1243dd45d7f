"""Tightness of the bound over committed baselines (issue 6 item 5).

    python tools/tightness.py line --seed S REPORT.json   one JSON line for a seed run
    python tools/tightness.py table baselines/cpu/torch baselines/h100/torch ...

``line`` summarizes one tolerance report (what ``tools/baseline.sh`` appends to a baseline's
``seeds.jsonl``). ``table`` prints the README's Markdown table: per baseline, the median and
maximum bound use and TOSA ratio of its seed-0 report (``tolerance.json.gz``), and over that
report plus ``seeds.jsonl`` the number of seeds, of cases judged, and of failures (every
failure of a correct kernel is a false failure: the baselined kernels are the correct ones).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.report import summary as S  # noqa: E402
from conformance.report.schema import load  # noqa: E402

BAD = ("fail", "crashed", "error")


def line(report: dict, seed: int) -> dict:
    """One seed run: verdict counts, cases judged, bound use and TOSA ratio, failed cases."""
    records = report["records"]
    use, tosa = S.spread(records, "bound_use"), S.spread(records, "tosa_ratio")
    return {"seed": seed, "counts": dict(S.verdict_counts(records)),
            "ran": use["n"] if use else 0,
            "median_use": use and use["median"], "max_use": use and use["max"],
            "median_tosa": tosa and tosa["median"], "max_tosa": tosa and tosa["max"],
            "failed": [r["case"] or r["key"] for r in records if r["verdict"] in BAD]}


def row(folder: Path) -> str:
    report = load(folder / "tolerance.json.gz")
    first = line(report, report["envelope"]["seed"])
    seeds = [first]
    extra = folder / "seeds.jsonl"
    if extra.exists():
        seeds += [json.loads(x) for x in extra.read_text().splitlines() if x.strip()]
    fails = sum(len(s["failed"]) for s in seeds)
    judged = sum(s["ran"] for s in seeds)
    worst = max(s["max_use"] or 0 for s in seeds)
    env = report["envelope"]
    g = lambda x: "-" if x is None else f"{x:.5g}"  # noqa: E731
    return (f"| `{folder.parent.name}/{folder.name}` | `{env['profile']}` | {first['ran']} | "
            f"{g(first['median_use'])} | {g(first['max_use'])} | {len(seeds)} | {judged} | "
            f"{g(worst)} | **{fails}** | {g(first['median_tosa'])} | {g(first['max_tosa'])} |")


HEADER = ("| baseline | profile | cases judged (seed 0) | bound use median | bound use max | "
          "seeds | cases judged (all seeds) | bound use max (all seeds) | false failures | "
          "bound / TOSA median | bound / TOSA max |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/tightness.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("line")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("report")
    tab = sub.add_parser("table")
    tab.add_argument("folders", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "line":
        print(json.dumps(line(load(args.report), args.seed)))
    else:
        print(HEADER)
        for f in args.folders:
            print(row(Path(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
