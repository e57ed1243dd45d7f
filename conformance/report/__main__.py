"""``python -m conformance.report``: diff, merge, render and schema.

  diff BASE NEW [--max-growth X]   regressions and improvements; exit 1 on a regression
  merge A B ... -o OUT             join shard reports into OUT/tolerance.{json,md,html}
  render REPORT [MORE ...] -o OUT  re-render md/html (MORE add series to the error-vs-K plot)
  schema                           print the report schema as Markdown

BASE, NEW, A, ... are ``tolerance.json`` files or the report directories holding them.
Exit status: 0 fine, 1 regression (diff), 2 bad input (unreadable or invalid report).
"""

from __future__ import annotations

import argparse
import sys

from . import schema
from .diff import DEFAULT_MAX_GROWTH, diff_reports, format_diff
from .merge import merge_reports
from .write import write_reports


def _growth(text: str) -> float:
    try:
        x = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.1 or 10%)") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="compare two reports")
    d.add_argument("base")
    d.add_argument("new")
    d.add_argument("--max-growth", type=_growth, default=DEFAULT_MAX_GROWTH,
                   help=f"relative growth of an error metric that counts as a regression even "
                        f"inside the bound (default {DEFAULT_MAX_GROWTH}, i.e. 10%%)")
    d.add_argument("--limit", type=int, default=50, help="lines per section (default 50)")
    m = sub.add_parser("merge", help="join shard reports")
    m.add_argument("reports", nargs="+")
    m.add_argument("-o", "--output", required=True, help="report directory to write")
    m.add_argument("--partial", action="store_true", help="allow missing shards")
    r = sub.add_parser("render", help="re-render Markdown and HTML from tolerance.json")
    r.add_argument("reports", nargs="+")
    r.add_argument("-o", "--output", required=True)
    sub.add_parser("schema", help="print the schema as Markdown")
    args = p.parse_args(argv)

    try:
        if args.cmd == "schema":
            print(schema.markdown(), end="")
            return 0
        if args.cmd == "diff":
            base, new = schema.load(args.base), schema.load(args.new)
            res = diff_reports(base, new, args.max_growth)
            print(format_diff(res, args.base, args.new, args.max_growth, args.limit))
            return 1 if res.regressions else 0
        if args.cmd == "merge":
            merged, warnings = merge_reports([(f, schema.load(f)) for f in args.reports], args.partial)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            paths = write_reports(merged["envelope"], merged["records"], args.output,
                                  step_summary=False, tables=merged.get("tables"))
            print(f"merged {len(args.reports)} reports, {len(merged['records'])} records "
                  f"(shards {', '.join(merged['envelope']['merged_from'])}): "
                  + ", ".join(map(str, paths)))
            return 0
        reports = [schema.load(f) for f in args.reports]
        paths = write_reports(reports[0]["envelope"], reports[0]["records"], args.output,
                              step_summary=False, extra=reports[1:],
                              tables=reports[0].get("tables"))
        print("written: " + ", ".join(map(str, paths)))
        return 0
    except schema.ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
