"""Write a run's three report files from its envelope and records."""

from __future__ import annotations

import os
from pathlib import Path

from . import schema
from .envelope import peak_fields
from .html import render_html
from .markdown import render_markdown
from .summary import verdict_counts

__all__ = ["make_report", "write_reports"]


def make_report(envelope: dict, records: list[dict], tables: dict | None = None) -> dict:
    """A validated report dict; records sorted by key, counts filled in, optional tables.
    An envelope without ``peak_tflops``/``peak_source`` (a report written before them) gets
    them from its ``device_name``; present ones are kept."""
    records = sorted(records, key=lambda r: r["key"])
    name = envelope.get("device_name")
    envelope = {**(peak_fields(name) if isinstance(name, str) else {}), **envelope,
                "counts": dict(sorted(verdict_counts(records).items()))}
    report = {"schema": schema.SCHEMA, "schema_version": schema.SCHEMA_VERSION,
              "envelope": envelope, "records": records}
    if tables:
        report["tables"] = tables
    return schema.decode(schema.validate(schema.encode(report)))


def write_reports(envelope: dict, records: list[dict], report_dir, step_summary: bool = True,
                  extra: list[dict] | None = None, tables: dict | None = None) -> list[Path]:
    """``tolerance.json``, ``.md`` and ``.html`` in ``report_dir``; the Markdown is also
    appended to ``$GITHUB_STEP_SUMMARY`` when that is set and ``step_summary`` is true."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    report = make_report(envelope, records, tables)
    paths = [report_dir / f"tolerance.{ext}" for ext in ("json", "md", "html")]
    schema.dump(report, paths[0])  # first: the data survives a rendering failure below
    md = render_markdown(report)
    paths[1].write_text(md, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(md + "\n")
    paths[2].write_text(render_html(report, extra), encoding="utf-8")
    return paths
