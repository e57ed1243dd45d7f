"""Aggregates over records that the Markdown and HTML reports share (no formatting here)."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from functools import cache

from golden.cases import Case, CaseError
from kernel.peaks import peak_tflops

__all__ = ["case_of", "scheme", "shape", "verdict_counts", "by_scheme", "worst", "finite",
           "sqnr_by_scheme", "ran", "largest", "operand_formats", "pct_peak", "timed",
           "fastest"]


@cache
def _parse(case_id: str) -> Case | None:
    try:
        return Case.from_id(case_id)
    except CaseError:
        return None


def case_of(record: dict) -> Case | None:
    """The record's case, or None for a test that is not a case (or an unparsable id)."""
    return _parse(record["case"]) if record.get("case") else None


def scheme(record: dict) -> str:
    """``op w=channel a=token``-style scheme label; ``other`` for non-case tests."""
    c = case_of(record)
    return f"{c.level} w={c.w} a={c.a}" if c else "other"


def shape(record: dict) -> str:
    c = case_of(record)
    return f"{c.M}x{c.N}x{c.K}" if c else "-"


def verdict_counts(records) -> Counter:
    return Counter(r["verdict"] for r in records)


def by_scheme(records) -> dict[str, Counter]:
    """Verdict counts per scheme, schemes sorted."""
    out: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        out[scheme(r)][r["verdict"]] += 1
    return dict(sorted(out.items()))


def finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def ran(records):
    """Records whose kernel ran and was judged (pass or fail with metrics)."""
    return [r for r in records if r["verdict"] in ("pass", "fail") and r["metrics"]]


def worst(records, metric: str, n: int = 10) -> list[dict]:
    """The ``n`` records with the largest ``metric`` (failures and crashes first)."""
    rank = {"crashed": 0, "fail": 1, "error": 2}

    def key(r):
        v = r["metrics"].get(metric)
        v = v if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)) else -1
        return (rank.get(r["verdict"], 3), -v)

    bad = [r for r in records if r["verdict"] in rank or r["verdict"] == "pass"]
    return sorted(bad, key=key)[:n]


def largest(records, metric: str) -> dict | None:
    """The record with the largest finite-or-inf (not NaN) ``metric``, or None."""
    have = [r for r in records if isinstance(r["metrics"].get(metric), int | float)
            and not math.isnan(r["metrics"][metric])]
    return max(have, key=lambda r: r["metrics"][metric], default=None)


def sqnr_by_scheme(records) -> dict[str, dict]:
    """Per scheme: count, min and median SQNR (dB) over layer cases with a finite SQNR."""
    vals: dict[str, list[float]] = defaultdict(list)
    for r in ran(records):
        v = r["metrics"].get("sqnr_db")
        if finite(v):
            vals[scheme(r)].append(v)
    return {s: {"n": len(v), "min": min(v), "median": statistics.median(v)}
            for s, v in sorted(vals.items())}


def spread(records, metric: str) -> dict | None:
    """Count, median and maximum of a finite ``metric`` over the records that ran, or None."""
    vals = [r["metrics"].get(metric) for r in ran(records)]
    vals = [v for v in vals if finite(v)]
    if not vals:
        return None
    return {"n": len(vals), "median": statistics.median(vals), "max": max(vals)}


def operand_formats(record: dict) -> tuple[str, str] | None:
    """The formats the kernel multiplies: FP8 A and B, or for a weight-only layer (``a=none``)
    the activation dtype and the FP8 weight; None for a test that is not a case."""
    c = case_of(record)
    if c is None:
        return None
    return (c.x if c.a == "none" else c.fmt_a), c.fmt_b


def pct_peak(record: dict, envelope: dict) -> float | None:
    """``pct_peak``: 100 tflops / the device's published dense peak for the record's formats
    (``kernel.peaks``); None without a finite tflops or without a peak (any CPU, weight-only)."""
    tflops, formats = record["metrics"].get("tflops"), operand_formats(record)
    if not finite(tflops) or formats is None:
        return None
    found = peak_tflops(envelope["device_name"], *formats)
    return 100.0 * tflops / found[0] if found else None


def timed(records) -> list[dict]:
    """Records that ran with a finite ``tflops`` (none for an empty output, M = 0)."""
    return [r for r in ran(records) if finite(r["metrics"].get("tflops"))]


def fastest(records, n: int = 5) -> list[dict]:
    """The ``n`` timed records with the highest ``tflops`` (ties by key)."""
    return sorted(timed(records), key=lambda r: (-r["metrics"]["tflops"], r["key"]))[:n]
