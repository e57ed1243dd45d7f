"""Join the shard reports of one run (``--shard i/n``) into the report of the whole run."""

from __future__ import annotations

from .schema import ReportError

__all__ = ["merge_reports", "MUST_MATCH"]

MUST_MATCH = ("backend", "device", "profile", "grid", "seed", "emulated", "golden")
_SHOULD_MATCH = ("device_name", "driver", "runtime", "versions", "git")


def _shards_of(name: str, env: dict) -> list[tuple[int, int]]:
    found = env["merged_from"] or ([env["shard"]] if env["shard"] else [])
    if not found:
        raise ReportError(f"{name}: a whole run (no shard), nothing to merge it with; merge joins "
                          "the reports of `pytest --shard i/n` runs")
    return [tuple(int(p) for p in s.split("/")) for s in found]


def merge_reports(reports: list[tuple[str, dict]], partial: bool = False) -> tuple[dict, list[str]]:
    """``(merged report, warnings)`` from ``[(name, report), ...]``.

    Every shard must come from the same kind of run (:data:`MUST_MATCH`); a shard given twice,
    a key in two shards, shards of different ``n`` and (unless ``partial``) a missing shard are
    errors naming the files."""
    if len(reports) < 2:
        raise ReportError("merge needs at least two shard reports")
    first_name, first = reports[0]
    env0 = first["envelope"]
    warnings = []
    seen: dict[tuple[int, int], str] = {}
    records: dict[str, dict] = {}
    owner: dict[str, str] = {}
    for name, rep in reports:
        env = rep["envelope"]
        for k in MUST_MATCH:
            if env[k] != env0[k]:
                raise ReportError(f"{name}: {k} is {env[k]!r} but {first_name} has {env0[k]!r}; "
                                  "only shards of the same run can be merged")
        for k in _SHOULD_MATCH:
            if env[k] != env0[k]:
                warnings.append(f"{name}: {k} differs from {first_name}: {env[k]!r} vs {env0[k]!r}")
        for shard in _shards_of(name, env):
            if shard[1] != next(iter(seen), shard)[1]:
                raise ReportError(f"{name}: shard {shard[0]}/{shard[1]} does not split the run "
                                  f"into {next(iter(seen))[1]} like the others")
            if shard in seen:
                raise ReportError(f"{name}: shard {shard[0]}/{shard[1]} is also in {seen[shard]}")
            seen[shard] = name
        for rec in rep["records"]:
            if rec["key"] in records:
                raise ReportError(f"{name}: case {rec['key']!r} is also in {owner[rec['key']]}")
            records[rec["key"]] = rec
            owner[rec["key"]] = name
    n = next(iter(seen))[1]
    missing = [f"{i}/{n}" for i in range(1, n + 1) if (i, n) not in seen]
    if missing and not partial:
        raise ReportError(f"shards {', '.join(missing)} are missing (pass them too, or --partial "
                          "for an incomplete report)")
    if missing:
        warnings.append(f"incomplete: shards {', '.join(missing)} missing")
    envelope = {**env0,
                "shard": None if not missing else ",".join(f"{i}/{n}" for i, _ in sorted(seen)),
                "merged_from": [f"{i}/{m}" for i, m in sorted(seen)],
                "date": min(r["envelope"]["date"] for _, r in reports),
                "command": " ; ".join(r["envelope"]["command"] for _, r in reports)}
    merged = list(records.values())
    tables = {}
    for _, rep in reports:  # each table from the first shard that has it (the fingerprint
        for name, rows in (rep.get("tables") or {}).items():  # is measured in one shard)
            tables.setdefault(name, rows)
    if "vllm_capability" in tables:  # per-scheme counts: recount over all shards' records
        from ..vllm_tables import report_tables

        tables.update(report_tables(envelope["backend"], merged, selection=False))
    return {"envelope": envelope, "records": merged, "tables": tables}, warnings
