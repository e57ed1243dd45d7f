"""Compare two reports case by case: verdicts that got worse, cases that disappeared, and error
metrics that grew by more than a factor even while still inside the bound."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Change", "DiffResult", "diff_reports", "RANK", "GROWTH_METRICS", "DEFAULT_MAX_GROWTH"]

# Worse verdicts rank lower. pass -> skip counts as worse: the case stopped being checked.
RANK = {"pass": 3, "skip": 2, "fail": 1, "error": 1, "crashed": 0}
GROWTH_METRICS = ("max_abs_err", "max_ulps", "bound_use", "rms_z", "mean_z", "sqnr_db")
DEFAULT_MAX_GROWTH = 0.10
_CONTEXT = ("backend", "device", "device_name", "profile", "grid", "seed")


@dataclass
class Change:
    key: str
    kind: str  # verdict, missing, growth, added
    detail: str
    reason: str | None = None


@dataclass
class DiffResult:
    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)


def _error_size(metric: str, value):
    """The value as an error size (bigger is worse), or None when absent or not a number.
    ``mean_z`` counts by magnitude; ``sqnr_db`` by noise power relative to the signal."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return None
    if metric == "mean_z":
        return abs(value)
    if metric == "sqnr_db":
        return 0.0 if value == math.inf else (math.inf if value == -math.inf else 10 ** (-value / 10))
    return float(value)


def growth(base: float, new: float) -> float:
    """Relative growth (new - base) / base; infinite when an error appears where there was none."""
    if new == base:
        return 0.0
    if base == 0:
        return math.inf
    if math.isinf(base):
        return -1.0 if not math.isinf(new) else 0.0
    return (new - base) / base


def _fmt(x) -> str:
    return format(x, ".4g") if isinstance(x, int | float) else str(x)


def diff_reports(base: dict, new: dict, max_growth: float = DEFAULT_MAX_GROWTH) -> DiffResult:
    """Classify every case of ``base`` and ``new``."""
    if not max_growth >= 0:
        raise ValueError(f"max_growth={max_growth!r}: must be >= 0")
    res = DiffResult()
    eb, en = base["envelope"], new["envelope"]
    for k in _CONTEXT:
        if eb.get(k) != en.get(k):
            res.notes.append(f"{k} differs: {eb.get(k)!r} -> {en.get(k)!r}")
    if eb.get("seed") != en.get("seed"):
        res.notes.append("different seeds give different inputs: metric changes are not comparable")
    old = {r["key"]: r for r in base["records"]}
    cur = {r["key"]: r for r in new["records"]}
    for key, b in old.items():
        n = cur.get(key)
        if n is None:
            res.regressions.append(Change(key, "missing", f"missing in NEW (was {b['verdict']})"))
            continue
        vb, vn = b["verdict"], n["verdict"]
        if RANK[vn] < RANK[vb]:
            res.regressions.append(Change(key, "verdict", f"{vb} -> {vn}", n.get("reason")))
            continue
        if RANK[vn] > RANK[vb]:
            res.improvements.append(Change(key, "verdict", f"{vb} -> {vn}"))
            continue
        grew, shrank = [], []
        for m in GROWTH_METRICS:
            x, y = _error_size(m, b["metrics"].get(m)), _error_size(m, n["metrics"].get(m))
            if x is None or y is None:
                continue
            g = growth(x, y)
            text = f"{m} {_fmt(b['metrics'][m])} -> {_fmt(n['metrics'][m])}" + (
                f" ({g:+.0%})" if math.isfinite(g) else " (was zero)")
            if g > max_growth:
                grew.append(text)
            elif g < 0 and growth(y, x) > max_growth:
                shrank.append(text)
        if grew:
            res.regressions.append(Change(key, "growth", "; ".join(grew)))
        elif shrank:
            res.improvements.append(Change(key, "growth", "; ".join(shrank)))
        else:
            res.unchanged += 1
    for key, n in cur.items():
        if key not in old:
            res.added.append(Change(key, "added", f"new case ({n['verdict']})"))
    return res


def format_diff(res: DiffResult, base_name: str, new_name: str, max_growth: float,
                limit: int = 50) -> str:
    """The terminal text of a diff; at most ``limit`` lines per section."""
    lines = [f"base: {base_name}", f"new:  {new_name}"] + [f"note: {n}" for n in res.notes]
    for title, items in (("REGRESSIONS", res.regressions), ("improvements", res.improvements),
                         ("added", res.added)):
        if not items:
            continue
        lines.append(f"{title} ({len(items)}):")
        for c in items[:limit]:
            lines.append(f"  {c.kind:8s} {c.detail}")
            lines.append(f"           {c.key}")
            if c.reason and c.reason.strip():
                lines.append(f"           {c.reason.strip().splitlines()[0][:200]}")
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more (--limit to show more)")
    lines.append(f"summary: {len(res.regressions)} regressions, {len(res.improvements)} improvements, "
                 f"{len(res.added)} added, {res.unchanged} unchanged (max growth {max_growth:.0%})")
    return "\n".join(lines)
