"""Tolerance reports (``conformance/report``): the versioned JSON schema and its docs, the
Markdown and HTML renderings, ``diff`` and ``merge``, and the ``python -m conformance.report`` CLI.

Every report here is synthetic (smoke-grid case ids, hand-made verdicts and metrics) but goes
through the real writer (``make_report`` / ``write_reports`` / ``schema.dump``). Rendering HTML
costs about a second of matplotlib per report, so only a few tests render it for real.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance.checks import rerun_command
from conformance.matrix import grid
from conformance.report import html as html_module
from conformance.report import schema
from conformance.report.__main__ import main
from conformance.report.diff import RANK, diff_reports, format_diff, growth
from conformance.report.envelope import peak_fields
from conformance.report.html import render_html
from conformance.report.markdown import LIMIT, render_markdown
from conformance.report.merge import merge_reports
from conformance.report.schema import (
    ENVELOPE_FIELDS,
    LATER_ENVELOPE_FIELDS,
    METRIC_FIELDS,
    RECORD_FIELDS,
    SCHEMA,
    SCHEMA_VERSION,
    VERDICTS,
    ReportError,
)
from conformance.report.write import make_report, write_reports
from golden.cases import Case

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "tolerance-schema.md"
SMOKE = [c.id for c in grid("smoke")]
OPS = [c for c in SMOKE if c.startswith("op|")]
LAYERS = [c for c in SMOKE if c.startswith("layer|")]

# The mixed report's special records.
FAIL_CASE, INF_CASE, NAN_CASE, CRASH_CASE, SKIP_CASE = OPS[:5]
EXACT_LAYER = LAYERS[0]  # sqnr_db = inf
BAD_REASON = "bound exceeded <script>alert(1)</script> see https://example.com/x.png"


# -- helpers -------------------------------------------------------------------------------------

def envelope(**over) -> dict:
    env = {
        "backend": "torch", "kernel": "torch._scaled_mm", "emulated": False, "profile": "fp32",
        "device": "cpu", "device_name": "test cpu", "driver": None, "runtime": None,
        "versions": {"python": "3.11.7", "numpy": "2.0.0", "torch": None, "vllm": None},
        "git": {"revision": None, "dirty": None}, "grid": "smoke", "seed": 0, "shard": None,
        "merged_from": [], "golden": False, "timing_reps": 1, "command": "pytest conformance",
        "date": "2026-01-01T00:00:00+00:00", "counts": {},
    }
    env.update(over)
    return {**peak_fields(env["device_name"]), **env}  # the peak follows an overridden name


def key_of(case_id: str) -> str:
    return f"conformance/test_scaled_mm.py::test_scaled_mm[{case_id}]"


def metrics(case_id: str | None = None, **over) -> dict:
    defaults = {"elements": 64, "max_abs_err": 0.01, "max_ulps": 1.0, "rel_err": 1e-3, "bound_use": 0.25,
                "frac_exact": 0.9, "frac_exact_min": 0.5, "rms_z": 0.1, "mean_z": 0.01,
                "sqnr_db": 30.0 if case_id and case_id.startswith("layer|") else None,
                "tosa_ratio": 2e-3, "kernel_s": 1e-4, "tflops": 0.01}
    m = {k: v for k, v in defaults.items() if k in METRIC_FIELDS}  # the schema's metrics only
    m.update(over)
    return m


def record(case_id: str | None, verdict: str = "pass", *, key: str | None = None,
           reason: str | None = None, checks: list | None = None, rerun: str | None | bool = True,
           seed: int = 0, **metric_over) -> dict:
    """A record like the tracker writes; metrics by default only where the kernel ran."""
    ran = verdict in ("pass", "fail")
    if rerun is True:
        rerun = (None if verdict == "crashed" or case_id is None
                 else rerun_command(case_id, "torch", "cpu", seed))
    return {
        "key": key or key_of(case_id),
        "test": "test_scaled_mm",
        "case": case_id,
        "verdict": verdict,
        "reason": reason if reason is not None or verdict == "pass" else f"{verdict} here",
        "checks": checks if checks is not None else (["bound"] if verdict == "fail" else []),
        "rerun": rerun,
        "metrics": metrics(case_id, **metric_over) if ran or metric_over else {},
        "duration_s": None if verdict == "crashed" else 0.01,
        "worker": None if verdict == "crashed" else "gw0",
    }


def report(records: list[dict], **env_over) -> dict:
    return make_report(envelope(**env_over), records)


def save(directory: Path, rep: dict) -> Path:
    """``directory/tolerance.json`` written as ``write_reports`` writes it (no Markdown/HTML)."""
    directory.mkdir(parents=True, exist_ok=True)
    schema.dump(rep, directory / "tolerance.json")
    return directory


def mixed_records() -> list[dict]:
    """Every smoke case: passes with growing bound use, a failure, non-finite metrics, a crash
    without a rerun line and a skip."""
    recs = []
    for i, c in enumerate(OPS):
        recs.append(record(c, bound_use=0.05 * i, max_ulps=float(i)))
    for i, c in enumerate(LAYERS):
        recs.append(record(c, bound_use=0.02 * i, sqnr_db=25.0 + i))
    special = {
        FAIL_CASE: record(FAIL_CASE, "fail", reason=BAD_REASON, bound_use=1.7, max_ulps=40.0),
        INF_CASE: record(INF_CASE, "fail", bound_use=math.inf, max_ulps=math.inf, max_abs_err=math.inf),
        NAN_CASE: record(NAN_CASE, "fail", checks=["nan"], bound_use=math.nan, max_abs_err=math.nan,
                         mean_z=-math.inf),
        CRASH_CASE: record(CRASH_CASE, "crashed", reason="worker 'gw1' crashed"),
        SKIP_CASE: record(SKIP_CASE, "skip", reason="needs cuda"),
        EXACT_LAYER: record(EXACT_LAYER, sqnr_db=math.inf, bound_use=0.0),
    }
    return [special.get(r["case"], r) for r in recs]


def by_case(rep: dict) -> dict:
    return {r["case"]: r for r in rep["records"]}


def scheme_of(case_id: str) -> str:
    c = Case.from_id(case_id)
    return f"{c.level} w={c.w} a={c.a}"


def _refuse_constant(name):
    raise AssertionError(f"non-standard JSON constant {name!r} in tolerance.json")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A report directory written by ``write_reports`` from :func:`mixed_records`."""
    d = tmp_path_factory.mktemp("mixed")
    paths = write_reports(envelope(), mixed_records(), d, step_summary=False)
    assert [p.name for p in paths] == ["tolerance.json", "tolerance.md", "tolerance.html"], paths
    return d


@pytest.fixture(scope="module")
def raw(written) -> dict:
    """The mixed report's tolerance.json as plain JSON (strings for non-finite numbers)."""
    return json.loads((written / "tolerance.json").read_text(), parse_constant=_refuse_constant)


def write_raw(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "tolerance.json"
    path.write_text(json.dumps(raw))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ReportError) as info:
        schema.load(path)
    msg = str(info.value)
    assert str(path) in msg, f"error does not name {path}: {msg}"
    return msg


# -- schema --------------------------------------------------------------------------------------

def test_helpers_fill_every_schema_field():
    rec = record(OPS[0])
    assert set(envelope()) == set(ENVELOPE_FIELDS), set(envelope()) ^ set(ENVELOPE_FIELDS)
    assert set(rec) == set(RECORD_FIELDS), set(rec) ^ set(RECORD_FIELDS)
    assert set(rec["metrics"]) == set(METRIC_FIELDS), set(rec["metrics"]) ^ set(METRIC_FIELDS)


def test_written_report_files_exist(written):
    sizes = {p.name: p.stat().st_size for p in written.iterdir()}
    assert set(sizes) == {"tolerance.json", "tolerance.md", "tolerance.html"}, sizes
    assert all(sizes.values()), sizes


def test_raw_json_has_schema_header(raw):
    header = (raw["schema"], raw["schema_version"], sorted(raw))
    assert header == (SCHEMA, SCHEMA_VERSION, ["envelope", "records", "schema", "schema_version"]), header


def test_make_report_sorts_records_and_counts_verdicts(raw):
    keys = [r["key"] for r in raw["records"]]
    assert keys == sorted(keys), keys
    counts = raw["envelope"]["counts"]
    expected = dict(Counter(r["verdict"] for r in mixed_records()))
    assert counts == expected, counts


@pytest.mark.parametrize("via", ["directory", "file"])
def test_load_round_trips(written, via):
    path = written if via == "directory" else written / "tolerance.json"
    loaded = schema.load(path)
    expected = make_report(envelope(), mixed_records())
    assert schema.encode(loaded) == schema.encode(expected), schema.encode(loaded)


@pytest.mark.parametrize(("case_id", "metric", "text"), [
    (INF_CASE, "bound_use", "inf"),
    (INF_CASE, "max_ulps", "inf"),
    (EXACT_LAYER, "sqnr_db", "inf"),
    (NAN_CASE, "max_abs_err", "nan"),
    (NAN_CASE, "bound_use", "nan"),
    (NAN_CASE, "mean_z", "-inf"),
])
def test_nonfinite_metrics_written_as_strings(raw, case_id, metric, text):
    value = by_case(raw)[case_id]["metrics"][metric]
    assert value == text, f"{metric} of {case_id} written as {value!r}"


def test_tolerance_json_is_strict_json(written):
    text = (written / "tolerance.json").read_text()
    bad = re.findall(r"\b(?:NaN|-?Infinity)\b", text)
    assert not bad, bad
    json.loads(text, parse_constant=_refuse_constant)


def test_load_gives_nonfinite_floats_back(written):
    recs = by_case(schema.load(written))
    got = {
        "inf bound_use": recs[INF_CASE]["metrics"]["bound_use"],
        "inf sqnr_db": recs[EXACT_LAYER]["metrics"]["sqnr_db"],
        "-inf mean_z": recs[NAN_CASE]["metrics"]["mean_z"],
        "nan max_abs_err": recs[NAN_CASE]["metrics"]["max_abs_err"],
    }
    assert all(isinstance(v, float) for v in got.values()), got
    assert got["inf bound_use"] == math.inf and got["inf sqnr_db"] == math.inf, got
    assert got["-inf mean_z"] == -math.inf and math.isnan(got["nan max_abs_err"]), got


@pytest.mark.parametrize("text", ["", "{not json", '{"schema": ', "[1, 2,]"])
def test_load_rejects_invalid_json(tmp_path, text):
    path = tmp_path / "tolerance.json"
    path.write_text(text)
    msg = load_error(path)
    assert "not valid JSON" in msg, msg


def test_load_rejects_non_utf8_file(tmp_path):
    path = tmp_path / "tolerance.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    load_error(path)


@pytest.mark.parametrize("where", ["file", "directory"])
def test_load_rejects_missing_file(tmp_path, where):
    path = tmp_path / "nowhere.json" if where == "file" else tmp_path
    msg = load_error(path)
    assert "cannot read" in msg, msg


@pytest.mark.parametrize("change", ["other", None, "missing", "list"])
def test_load_rejects_wrong_schema(tmp_path, raw, change):
    doc = dict(raw)
    if change == "missing":
        del doc["schema"]
    elif change == "list":
        doc = [doc]
    else:
        doc["schema"] = change
    msg = load_error(write_raw(tmp_path, doc))
    assert "not a tolerance report" in msg, msg


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, str(SCHEMA_VERSION), None, "missing"])
def test_load_rejects_other_schema_version(tmp_path, raw, version):
    doc = dict(raw)
    if version == "missing":
        del doc["schema_version"]
    else:
        doc["schema_version"] = version
    msg = load_error(write_raw(tmp_path, doc))
    assert "schema_version" in msg, msg


@pytest.mark.parametrize("field", [f for f in ENVELOPE_FIELDS if f not in LATER_ENVELOPE_FIELDS])
def test_load_rejects_missing_envelope_field(tmp_path, raw, field):
    doc = {**raw, "envelope": {k: v for k, v in raw["envelope"].items() if k != field}}
    msg = load_error(write_raw(tmp_path, doc))
    assert f"missing field {field!r}" in msg, msg


@pytest.mark.parametrize(("field", "value"), [
    ("emulated", "yes"), ("seed", "0"), ("merged_from", "1/3"), ("shard", 1), ("versions", []),
])
def test_load_rejects_envelope_field_of_wrong_type(tmp_path, raw, field, value):
    doc = {**raw, "envelope": {**raw["envelope"], field: value}}
    msg = load_error(write_raw(tmp_path, doc))
    assert repr(field) in msg, msg


@pytest.mark.parametrize("field", list(RECORD_FIELDS))
def test_load_rejects_record_missing_field(tmp_path, raw, field):
    records = [dict(r) for r in raw["records"]]
    del records[3][field]
    msg = load_error(write_raw(tmp_path, {**raw, "records": records}))
    assert "record 3" in msg and f"missing field {field!r}" in msg, msg


@pytest.mark.parametrize("verdict", ["flaky", "PASS", "xfail", ""])
def test_load_rejects_unknown_verdict(tmp_path, raw, verdict):
    records = [dict(r) for r in raw["records"]]
    records[2]["verdict"] = verdict
    msg = load_error(write_raw(tmp_path, {**raw, "records": records}))
    assert f"verdict {verdict!r}" in msg, msg


def test_load_rejects_duplicated_key(tmp_path, raw):
    records = [dict(r) for r in raw["records"]]
    records[5]["key"] = records[1]["key"]
    msg = load_error(write_raw(tmp_path, {**raw, "records": records}))
    assert "appears twice" in msg and records[1]["key"] in msg, msg


@pytest.mark.parametrize(("metric", "value"), [
    ("bound_use", "big"), ("bound_use", True), ("bound_use", None), ("max_ulps", [1.0]),
    ("elements", 1.5), ("elements", "64"), ("sqnr_db", "30 dB"), ("tflops", {}),
])
def test_load_rejects_metric_of_wrong_type(tmp_path, raw, metric, value):
    records = [dict(r) for r in raw["records"]]
    i = next(i for i, r in enumerate(records) if r["verdict"] == "pass")
    records[i]["metrics"] = {**records[i]["metrics"], metric: value}
    msg = load_error(write_raw(tmp_path, {**raw, "records": records}))
    assert f"record {i} metrics" in msg and repr(metric) in msg, msg


@pytest.mark.parametrize(("where", "field"), [
    ("envelope", "seed"), ("envelope", "timing_reps"), ("metrics", "elements"),
])
def test_load_rejects_boolean_for_integer_field(tmp_path, raw, where, field):
    doc = json.loads(json.dumps(raw))
    if where == "envelope":
        doc["envelope"][field] = True
    else:
        doc["records"][0]["metrics"][field] = True
    msg = load_error(write_raw(tmp_path, doc))
    assert repr(field) in msg, msg


def test_dump_refuses_invalid_report(tmp_path):
    rep = report([record(OPS[0])])
    rep["records"][0]["verdict"] = "flaky"
    path = tmp_path / "tolerance.json"
    with pytest.raises(ReportError, match="flaky"):
        schema.dump(rep, path)
    assert not path.exists(), "an invalid report was written"


def test_make_report_accepts_every_verdict():
    recs = [record(c, v) for c, v in zip(OPS, VERDICTS, strict=False)]
    counts = report(recs)["envelope"]["counts"]
    assert counts == dict.fromkeys(sorted(VERDICTS), 1), counts


def test_docs_schema_is_generated_output():
    committed = DOCS.read_text()
    assert committed == schema.markdown(), (
        "docs/tolerance-schema.md is stale: regenerate it with `python -m conformance.report schema "
        "> docs/tolerance-schema.md`")


def test_docs_schema_lists_every_field():
    text = DOCS.read_text()
    missing = [name for table in (ENVELOPE_FIELDS, RECORD_FIELDS, METRIC_FIELDS) for name in table
               if f"| `{name}` |" not in text]
    assert not missing, missing
    assert f"version {SCHEMA_VERSION}" in text and SCHEMA in text, text[:300]


def test_cli_schema_prints_docs(capsys):
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out == DOCS.read_text(), out[:300]


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "conformance.report", "schema"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DOCS.read_text(), proc.stdout[:300]


# -- markdown ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def md(written) -> str:
    return (written / "tolerance.md").read_text(encoding="utf-8")


def table_rows(text: str, heading: str) -> list[list[str]]:
    """Data rows (cells split on unescaped |) of the first table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_markdown_file_is_render_of_written_report(written, md):
    assert md == render_markdown(schema.load(written)), md[:300]


def test_markdown_under_limit_with_5000_long_failures():
    long = "AssertionError: bound exceeded at [3, 7]\n" + "x" * 5000
    cases = [SMOKE[i % len(SMOKE)] for i in range(5000)]
    recs = [record(c, "fail", key=key_of(f"{c}-{i}"), reason=f"{i}: {long}", bound_use=1.0 + i / 1000)
            for i, c in enumerate(cases)]
    text = render_markdown(report(recs))
    assert len(text) < LIMIT, len(text)
    assert "### Failures (5000)" in text and "5000 failures in all" in text, text[-500:]


def test_markdown_verdict_table_per_scheme(md):
    expected: dict[str, Counter] = {}
    for r in mixed_records():
        expected.setdefault(scheme_of(r["case"]), Counter())[r["verdict"]] += 1
    rows = table_rows(md, "### Verdicts per scheme")
    got = {row[0]: dict(zip(("pass", "fail", "crashed", "error", "skip"), map(int, row[2:7]), strict=True))
           for row in rows}
    want = {s: {v: c[v] for v in ("pass", "fail", "crashed", "error", "skip")} for s, c in expected.items()}
    assert got == want, rows
    assert all(row[1] == "torch" for row in rows), rows


def test_markdown_names_worst_bound_use(md):
    line = next((x for x in md.splitlines() if x.startswith("**Worst bound use:**")), None)
    assert line == f"**Worst bound use:** inf in `{INF_CASE}`", line


def test_markdown_worst_bound_use_is_the_largest():
    passing = record(OPS[0], bound_use=0.9)
    variance_fail = record(OPS[1], "fail", checks=["variance"], bound_use=0.3)
    text = render_markdown(report([passing, variance_fail]))
    line = next(x for x in text.splitlines() if x.startswith("**Worst bound use:**"))
    assert line == f"**Worst bound use:** 0.9 in `{OPS[0]}`", line


def test_markdown_sqnr_table_for_layer_cases(md):
    rows = table_rows(md, "### SQNR against the unquantized float64 product")
    expected = {}
    for r in mixed_records():
        v = r["metrics"].get("sqnr_db")
        if v is not None and math.isfinite(v):
            expected.setdefault(scheme_of(r["case"]), []).append(v)
    got = {row[0]: (int(row[1]), float(row[2])) for row in rows}
    want = {s: (len(v), round(min(v), 2)) for s, v in expected.items()}
    assert got == want, rows
    assert all(s.startswith("layer ") for s in got), got


def test_markdown_no_sqnr_table_without_sqnr():
    text = render_markdown(report([record(c) for c in OPS]))
    assert "SQNR" not in text, text


def test_markdown_ten_worst_cases_have_rerun_commands(md):
    rows = table_rows(md, "### Ten worst cases")
    assert [row[0] for row in rows] == [str(i) for i in range(1, 11)], rows
    bad = [row for row in rows if not (row[5].startswith("`pytest conformance ") and "--case=" in row[5])]
    assert not bad, bad
    assert rows[0][1] == "crashed" and rows[1][4] == f"`{INF_CASE.replace('|', chr(92) + '|')}`", rows[:2]


def test_markdown_rebuilds_rerun_for_crashed_records():
    crashed = record(OPS[0], "crashed", rerun=None)
    assert crashed["rerun"] is None
    rep = report([crashed, record(OPS[1])], backend="torch-fast", seed=7)
    row = table_rows(render_markdown(rep), "### Ten worst cases")[0]
    want = rerun_command(OPS[0], "torch-fast", "cpu", 7).replace("|", "\\|")
    assert row[1] == "crashed" and row[5] == f"`{want}`", row


def test_markdown_crashed_failure_listed(md):
    assert f"crashed: <code>{CRASH_CASE}</code>" in md, md


# -- html ----------------------------------------------------------------------------------------

class _Resources(HTMLParser):
    """Tags and the values of every attribute that can load something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster", "background"):
                self.refs.append((tag, name, value or ""))


@pytest.fixture(scope="module")
def page(written) -> str:
    return (written / "tolerance.html").read_text(encoding="utf-8")


def parsed(doc: str) -> _Resources:
    p = _Resources()
    p.feed(doc)
    p.close()
    return p


def test_html_is_one_document(page):
    shape = (page.startswith("<!DOCTYPE html>"), page.count("<html"), page.rstrip().endswith("</html>"))
    assert shape == (True, 1, True), (shape, page[:100], page[-100:])


def test_html_has_no_scripts_or_external_resources(page):
    p = parsed(page)
    forbidden = {"script", "link", "iframe", "object", "embed"} & set(p.tags)
    assert not forbidden, forbidden
    assert "<script" not in page.lower(), page[page.lower().index("<script") - 100:][:300]
    external = [ref for ref in p.refs if not ref[2].startswith("data:")]
    assert not external, external
    css = re.findall(r"url\s*\(|@import", page)
    assert not css, css
    linked = re.findall(r"""(?:src|href)\s*=\s*["']?\s*https?://[^"'\s>]*""", page)
    assert not linked, linked


def test_html_has_four_inline_png_plots(page):
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == 4, imgs
    srcs = [ref[2] for ref in parsed(page).refs if ref[:2] == ("img", "src")]
    prefix = "data:image/png;base64,"
    assert len(srcs) == 4 and all(s.startswith(prefix) for s in srcs), [s[:40] for s in srcs]
    heads = [base64.b64decode(s[len(prefix):], validate=True)[:8] for s in srcs]
    assert all(h == b"\x89PNG\r\n\x1a\n" for h in heads), heads
    alts = re.findall(r"<img alt='([^']*)'", page)
    plots = ("Error against K", "Bound-use histogram", "Scheme by shape", "SQNR per scheme")
    assert len(alts) == 4 and all(a.startswith(p) for a, p in zip(alts, plots, strict=True)), alts


def test_html_escapes_reasons_and_rebuilds_rerun(page):
    assert html.escape(BAD_REASON) in page, BAD_REASON
    rerun = html.escape(rerun_command(CRASH_CASE, "torch", "cpu", 0))
    assert rerun in page, rerun


@pytest.mark.parametrize("emulated", [True, False])
def test_html_emulated_banner_only_when_emulated(monkeypatch, emulated):
    monkeypatch.setattr(html_module, "_plots", lambda report, extra: [])  # plots are not the point
    doc = render_html(report([record(OPS[0]), record(LAYERS[0])], emulated=emulated))
    banner = "class='emu'" in doc, "emulation" in doc
    assert banner == (emulated, emulated), banner


def test_html_written_report_has_no_emulated_banner(page):
    assert "class='emu'" not in page, page[:1000]


def test_html_renders_records_without_a_parsable_case():
    odd = [record(None, key="conformance/test_other.py::test_not_a_case", bound_use=0.5),
           record("op|from-an-older-suite", key=key_of("op|from-an-older-suite"), bound_use=0.4)]
    doc = render_html(report([record(OPS[0]), record(LAYERS[0]), *odd]))
    imgs = re.findall(r"<img\b[^>]*>", doc)
    assert len(imgs) == 4, len(imgs)


# -- diff ----------------------------------------------------------------------------------------

def pair(base_over: dict | None = None, new_over: dict | None = None, *, base_verdict="pass",
         new_verdict="pass") -> tuple[dict, dict]:
    """Two reports of the smoke op cases differing only in the first case."""
    others = [record(c) for c in OPS[1:]]
    base = report([record(OPS[0], base_verdict, **(base_over or {})), *others])
    new = report([record(OPS[0], new_verdict, **(new_over or {})), *others])
    return base, new


def kinds(changes) -> list[tuple[str, str]]:
    return [(c.key, c.kind) for c in changes]


def test_rank_covers_every_verdict():
    assert set(RANK) == set(VERDICTS), set(RANK) ^ set(VERDICTS)


def test_diff_identical_reports_has_no_regressions(written):
    rep = schema.load(written)
    res = diff_reports(rep, schema.load(written))
    assert not (res.regressions or res.improvements or res.added), res
    assert res.unchanged == len(rep["records"]), res.unchanged


def test_cli_diff_identical_exits_0(written, capsys):
    assert main(["diff", str(written), str(written / "tolerance.json")]) == 0
    out = capsys.readouterr().out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("summary: 0 regressions, 0 improvements, 0 added"), summary


@pytest.mark.parametrize("new_verdict", ["fail", "crashed", "skip", "error"])
def test_diff_worse_verdict_is_regression(new_verdict):
    base, new = pair(new_verdict=new_verdict)
    res = diff_reports(base, new)
    assert kinds(res.regressions) == [(key_of(OPS[0]), "verdict")], res.regressions
    assert res.regressions[0].detail == f"pass -> {new_verdict}", res.regressions[0]


def test_diff_better_verdict_is_improvement():
    res = diff_reports(*pair(base_verdict="fail"))
    assert not res.regressions and kinds(res.improvements) == [(key_of(OPS[0]), "verdict")], res


def test_diff_missing_case_is_regression():
    base = report([record(c) for c in OPS])
    new = report([record(c) for c in OPS[1:]])
    res = diff_reports(base, new)
    assert kinds(res.regressions) == [(key_of(OPS[0]), "missing")], res.regressions


def test_diff_added_case_is_not_regression():
    base = report([record(c) for c in OPS[1:]])
    new = report([record(c) for c in OPS])
    res = diff_reports(base, new)
    assert not res.regressions and kinds(res.added) == [(key_of(OPS[0]), "added")], res


@pytest.mark.parametrize(("max_growth", "regressed"), [(0.1, True), (0.49, True), (0.5, False), (1.0, False)])
def test_diff_metric_growth_against_max_growth(max_growth, regressed):
    res = diff_reports(*pair({"max_abs_err": 0.02}, {"max_abs_err": 0.03}), max_growth)
    got = kinds(res.regressions)
    assert got == ([(key_of(OPS[0]), "growth")] if regressed else []), (max_growth, got)
    assert not res.improvements, res.improvements


def test_diff_error_appearing_from_zero_is_regression():
    res = diff_reports(*pair({"max_ulps": 0.0}, {"max_ulps": 1.0}), 1000.0)
    assert kinds(res.regressions) == [(key_of(OPS[0]), "growth")], res.regressions
    assert "was zero" in res.regressions[0].detail, res.regressions[0].detail


def test_diff_shrinking_is_improvement():
    res = diff_reports(*pair({"bound_use": 0.6, "rms_z": 0.3}, {"bound_use": 0.3, "rms_z": 0.1}))
    assert not res.regressions and kinds(res.improvements) == [(key_of(OPS[0]), "growth")], res


@pytest.mark.parametrize(("base", "new", "outcome"), [
    (-0.2, 0.2, "unchanged"), (0.2, -0.2, "unchanged"), (0.1, -0.3, "regression"),
    (-0.3, 0.1, "improvement"),
])
def test_diff_mean_z_by_magnitude(base, new, outcome):
    res = diff_reports(*pair({"mean_z": base}, {"mean_z": new}))
    got = "regression" if res.regressions else "improvement" if res.improvements else "unchanged"
    assert got == outcome, (base, new, res)


@pytest.mark.parametrize(("base", "new", "outcome"), [
    (30.0, 25.0, "regression"), (30.0, 29.9, "unchanged"), (25.0, 30.0, "improvement"),
    (math.inf, 40.0, "regression"), (40.0, math.inf, "improvement"),
])
def test_diff_sqnr_drop_is_noise_growth(base, new, outcome):
    res = diff_reports(*pair({"sqnr_db": base}, {"sqnr_db": new}))
    got = "regression" if res.regressions else "improvement" if res.improvements else "unchanged"
    assert got == outcome, (base, new, res)


@pytest.mark.parametrize(("base", "new", "expected"), [
    (0.0, 0.0, 0.0), (0.0, 1.0, math.inf), (2.0, 3.0, 0.5), (4.0, 1.0, -0.75), (math.inf, 1.0, -1.0),
    (math.inf, math.inf, 0.0),
])
def test_growth(base, new, expected):
    assert growth(base, new) == expected, growth(base, new)


def test_diff_rejects_negative_max_growth():
    with pytest.raises(ValueError, match="max_growth"):
        diff_reports(*pair(), -0.1)


def test_format_diff_summary_and_sections():
    res = diff_reports(*pair(new_verdict="fail"))
    text = format_diff(res, "a", "b", 0.1)
    assert "REGRESSIONS (1):" in text and key_of(OPS[0]) in text and "fail here" in text, text
    assert text.splitlines()[-1].startswith("summary: 1 regressions, 0 improvements"), text


def test_format_diff_survives_blank_reason():
    base = report([record(OPS[0])])
    new = report([record(OPS[0], "skip", reason=" ")])
    text = format_diff(diff_reports(base, new), "a", "b", 0.1)
    assert "REGRESSIONS (1):" in text and "pass -> skip" in text, text


@pytest.fixture
def diff_files(tmp_path):
    """base/ and new/ report directories; NEW's first case grew bound_use by 15%."""
    base, new = pair({"bound_use": 0.4}, {"bound_use": 0.46})
    return str(save(tmp_path / "base", base)), str(save(tmp_path / "new", new))


@pytest.mark.parametrize(("max_growth", "code"), [("10%", 1), ("0.1", 1), ("20%", 0), ("0.2", 0)])
def test_cli_max_growth_accepts_fraction_and_percent(diff_files, capsys, max_growth, code):
    rc = main(["diff", *diff_files, "--max-growth", max_growth])
    out = capsys.readouterr().out
    assert rc == code, out
    want = "10%" if code == 1 else "20%"
    assert out.strip().endswith(f"(max growth {want})"), out


@pytest.mark.parametrize("value", ["-0.5", "-10%", "abc", "nan", "%"])
def test_cli_max_growth_rejects_bad_values(capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["diff", "base", "new", f"--max-growth={value}"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--max-growth" in err, (info.value.code, err)


def test_cli_diff_exits_1_on_regression(tmp_path, capsys):
    base, new = pair(new_verdict="crashed")
    rc = main(["diff", str(save(tmp_path / "b", base)), str(save(tmp_path / "n", new))])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "REGRESSIONS (1):" in out and "pass -> crashed" in out, out


@pytest.mark.parametrize("broken", ["base", "new"])
@pytest.mark.parametrize("problem", ["missing", "invalid"])
def test_cli_diff_exits_2_on_unreadable_report(tmp_path, capsys, broken, problem):
    good = save(tmp_path / "good", report([record(OPS[0])])) / "tolerance.json"
    bad = tmp_path / "bad" / "tolerance.json"
    if problem == "invalid":
        bad.parent.mkdir()
        bad.write_text('{"schema": "fp8-conformance-tolerance", "schema_version": 1}')
    args = [bad, good] if broken == "base" else [good, bad]
    rc = main(["diff", *map(str, args)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and str(bad) in err, err


# -- merge ---------------------------------------------------------------------------------------

def shard_reports(n: int = 3) -> list[tuple[str, dict]]:
    """The smoke grid split into ``n`` disjoint shard reports, named like files."""
    return [(f"shard{i}/tolerance.json",
             report([record(c) for c in SMOKE[i - 1::n]], shard=f"{i}/{n}",
                    date=f"2026-01-0{i}T00:00:00+00:00", command=f"pytest --shard {i}/{n}"))
            for i in range(1, n + 1)]


def merge_error(reports, partial=False) -> str:
    with pytest.raises(ReportError) as info:
        merge_reports(reports, partial=partial)
    return str(info.value)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_merge_three_shards(order):
    shards = shard_reports()
    merged, warnings = merge_reports([shards[i] for i in order])
    assert warnings == [], warnings
    env = merged["envelope"]
    assert (env["shard"], env["merged_from"]) == (None, ["1/3", "2/3", "3/3"]), env
    keys = sorted(r["key"] for r in merged["records"])
    assert keys == sorted(key_of(c) for c in SMOKE), keys
    whole = make_report(env, merged["records"])
    assert whole["envelope"]["counts"] == {"pass": len(SMOKE)}, whole["envelope"]["counts"]
    assert env["date"] == "2026-01-01T00:00:00+00:00", env["date"]


def test_merge_keeps_the_fingerprint_from_whichever_shard_measured_it():
    """Only the shard that ran conformance/test_profile.py has the fingerprint tables."""
    shards = shard_reports()
    fp = {"fingerprint": [{"probe": "acc_bits", "measured": 13, "exact arithmetic": "exact"}],
          "profile_check": [{"status": "consistent"}]}
    shards[1][1]["tables"] = fp
    merged, _ = merge_reports(shards)
    assert merged["tables"] == fp


def test_merge_rejects_same_shard_twice():
    s1, s2, s3 = shard_reports()
    msg = merge_error([s1, s2, ("copy/tolerance.json", s2[1]), s3])
    assert "copy/tolerance.json" in msg and s2[0] in msg and "2/3" in msg, msg


@pytest.mark.parametrize(("field", "value"), [("backend", "torch-fast"), ("seed", 1), ("grid", "full")])
def test_merge_rejects_shards_of_different_runs(field, value):
    s1, s2, (name, rep) = shard_reports()
    other = make_report({**rep["envelope"], field: value}, rep["records"])
    msg = merge_error([s1, s2, (name, other)])
    assert name in msg and field in msg and repr(value) in msg, msg


def test_merge_rejects_shards_of_different_n():
    s1, s2, _ = shard_reports()
    name, rep = shard_reports(4)[2]
    msg = merge_error([s1, s2, (name, rep)])
    assert name in msg and "3/4" in msg, msg


def test_merge_rejects_key_in_two_shards():
    s1, s2, (name, rep) = shard_reports()
    dup = s1[1]["records"][0]
    msg = merge_error([s1, s2, (name, make_report(rep["envelope"], [*rep["records"], dup]))])
    assert name in msg and s1[0] in msg and dup["key"] in msg, msg


def test_merge_rejects_whole_run_report():
    s1, s2, _ = shard_reports()
    whole = ("whole/tolerance.json", report([record(c) for c in SMOKE[2::3]]))
    msg = merge_error([s1, s2, whole])
    assert "whole/tolerance.json" in msg and "whole run" in msg, msg


def test_merge_rejects_single_report():
    msg = merge_error(shard_reports()[:1])
    assert "at least two" in msg, msg


def test_merge_rejects_missing_shard():
    s1, _, s3 = shard_reports()
    msg = merge_error([s1, s3])
    assert "2/3" in msg and "missing" in msg, msg


def test_merge_partial_warns_and_records_present_shards():
    s1, _, s3 = shard_reports()
    merged, warnings = merge_reports([s1, s3], partial=True)
    assert any("2/3" in w and "missing" in w for w in warnings), warnings
    env = merged["envelope"]
    assert env["merged_from"] == ["1/3", "3/3"] and env["shard"] is not None, env
    keys = {r["key"] for r in merged["records"]}
    assert keys == {r["key"] for _, rep in (s1, s3) for r in rep["records"]}, keys
    make_report(env, merged["records"])  # still a valid report


def test_merge_partial_then_remaining_shard():
    s1, s2, s3 = shard_reports()
    part, _ = merge_reports([s1, s2], partial=True)
    part = make_report(part["envelope"], part["records"])
    merged, warnings = merge_reports([("part/tolerance.json", part), s3])
    env = merged["envelope"]
    assert (env["shard"], env["merged_from"], warnings) == (None, ["1/3", "2/3", "3/3"], []), env
    keys = sorted(r["key"] for r in merged["records"])
    assert keys == sorted(key_of(c) for c in SMOKE), keys


def test_merge_remaining_shard_already_in_merged_report_is_rejected():
    s1, s2, s3 = shard_reports()
    part, _ = merge_reports([s1, s2], partial=True)
    part = make_report(part["envelope"], part["records"])
    msg = merge_error([("part/tolerance.json", part), s2])
    assert "part/tolerance.json" in msg and s2[0] in msg, msg


def test_cli_merge_writes_report_files(tmp_path, capsys):
    dirs = [str(save(tmp_path / name.split("/")[0], rep)) for name, rep in shard_reports()]
    out = tmp_path / "merged"
    assert main(["merge", *dirs, "-o", str(out)]) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "merged 3 reports" in stdout and "shards 1/3, 2/3, 3/3" in stdout, stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == ["tolerance.html", "tolerance.json", "tolerance.md"], files
    merged = schema.load(out)
    env = merged["envelope"]
    assert (env["shard"], env["merged_from"], env["counts"]) == (None, ["1/3", "2/3", "3/3"],
                                                                 {"pass": len(SMOKE)}), env
    assert "merged from shards 1/3, 2/3, 3/3" in (out / "tolerance.md").read_text(), "md"


def test_cli_merge_error_exits_2(tmp_path, capsys):
    s1, s2, _ = shard_reports()
    a = save(tmp_path / "a", s1[1])
    b = save(tmp_path / "b", s1[1])
    rc = main(["merge", str(a), str(b), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and str(b) in err and str(a) in err, (rc, err)
    assert not (tmp_path / "out").exists(), "a failed merge wrote output"


def _vllm_tables() -> dict:
    sel = [{"platform": "XPU", "path": "w8a8", "scheme": "w=tensor,a=static",
            "selected": "XPUW8A16FP8LinearKernel", "is_supported": "assumed (off-platform)",
            "drops_act_quant": True, "drops_how": "measured on CPU: <b>x</b>", "note": None,
            "rejected_before": []}]
    cap = [{"kernel": "K", "w": "tensor", "a": "static", "format": "e4m3fn", "x": "bf16",
            "out": "bf16", "cases": 2, "passed": 0, "failed": 2, "skipped": 0,
            "can_implement": "accepts", "status": "VIOLATION: accepted but 2 cases fail"}]
    return {"vllm_selection": sel, "vllm_capability": cap}


def test_tables_round_trip_and_render_in_markdown_and_html(tmp_path):
    """A vllm run's selection and capability tables are kept in the JSON and shown in the
    Markdown and the HTML (escaped)."""
    from conformance.report.write import write_reports

    paths = write_reports(envelope(), [record(OPS[0])], tmp_path, step_summary=False,
                          tables=_vllm_tables())
    rep = schema.load(paths[0])
    assert rep["tables"]["vllm_selection"][0]["selected"] == "XPUW8A16FP8LinearKernel"
    md = paths[1].read_text()
    assert "### vLLM kernel selection" in md and "VIOLATION: accepted but 2 cases fail" in md
    page = paths[2].read_text()
    assert "vLLM kernel selection" in page and "&lt;b&gt;x&lt;/b&gt;" in page


@pytest.mark.parametrize("tables", [[1, 2], {"t": "rows"}, {"t": [1]}])
def test_malformed_tables_are_a_report_error(tables):
    rep = {"schema": schema.SCHEMA, "schema_version": schema.SCHEMA_VERSION,
           "envelope": schema.encode(envelope()), "records": [], "tables": tables}
    with pytest.raises(schema.ReportError, match="tables"):
        schema.validate(rep)


def test_gzipped_report_loads_and_a_bad_one_is_a_report_error(tmp_path):
    """Committed baselines are tolerance.json.gz: load reads them (file or directory)."""
    import gzip as gz

    from conformance.report.write import make_report

    rep = make_report(envelope(), [record(OPS[0])])
    (tmp_path / "tolerance.json.gz").write_bytes(
        gz.compress(json.dumps(schema.encode(rep)).encode()))
    assert schema.load(tmp_path)["records"][0]["case"] == OPS[0]
    assert schema.load(tmp_path / "tolerance.json.gz")["envelope"]["backend"]
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(schema.ReportError, match="gzip"):
        schema.load(tmp_path / "bad.json.gz")


# -- kernel throughput against the device's published FP8 peak -----------------------------------

H100 = "NVIDIA H100 80GB HBM3"
WEIGHT_ONLY = Case(16, 64, 128, level="layer", w="channel", a="none", sb="[N]").id
FNUZ = Case(16, 64, 128, fmt_a="e4m3fnuz", fmt_b="e4m3fnuz").id


def expected_pct(case_id: str, tflops, device_name: str):
    """100 tflops / the table's peak for the case's operand formats, or None."""
    from kernel.peaks import peak_tflops

    c = Case.from_id(case_id)
    found = peak_tflops(device_name, c.x if c.a == "none" else c.fmt_a, c.fmt_b)
    return None if found is None or tflops is None else 100 * tflops / found[0]


def timed_records(n: int = 8) -> list[dict]:
    """Op cases with distinct kernel times (the fastest last), one untimed (M = 0)."""
    recs = [record(c, kernel_s=1e-5 * (i + 1), tflops=0.5 + i) for i, c in enumerate(OPS[:n])]
    return [*recs, record(OPS[n], kernel_s=None, tflops=None), record(OPS[n + 1], "skip")]


@pytest.mark.parametrize("name", [H100, "NVIDIA H100 PCIe", "NVIDIA L4", "test cpu",
                                  "Intel(R) Xeon(R) Platinum 8480+"])
def test_peak_fields_are_the_table_for_e4m3(name):
    from kernel.peaks import peak_tflops

    found = peak_tflops(name, "e4m3fn", "e4m3fn")
    want = dict(zip(("peak_tflops", "peak_source"), found or (None, None), strict=True))
    assert peak_fields(name) == want, peak_fields(name)
    assert (found is None) == (name in ("test cpu", "Intel(R) Xeon(R) Platinum 8480+")), found


@pytest.mark.parametrize("device_name", [H100, "AMD EPYC 9654 96-Core Processor"])
def test_make_envelope_carries_the_device_peak(monkeypatch, device_name):
    from types import SimpleNamespace

    from conformance.report import envelope as envelope_module

    monkeypatch.setattr(envelope_module, "device_info", lambda device: {
        "device_name": device_name, "driver": None, "runtime": None})
    adapter = SimpleNamespace(name="torch", description="torch._scaled_mm", emulated=False,
                              why_unavailable=lambda device: None,
                              profile=lambda device: SimpleNamespace(name="fp32"))
    env = envelope_module.make_envelope(adapter=adapter, device="cuda", grid="smoke", seed=0,
                                        shard=None, golden=False, timing_reps=1, command="pytest")
    assert set(env) == set(ENVELOPE_FIELDS), set(env) ^ set(ENVELOPE_FIELDS)
    assert {k: env[k] for k in LATER_ENVELOPE_FIELDS} == peak_fields(device_name), env
    assert (env["peak_tflops"] is None) == ("EPYC" in device_name), env["peak_tflops"]


@pytest.mark.parametrize("device_name", [H100, "test cpu"])
def test_pct_peak_per_record_formats(device_name):
    from conformance.report.summary import pct_peak

    mixed = Case(16, 64, 128, fmt_a="e5m2", fmt_b="e4m3fn").id
    recs = [record(OPS[0], tflops=3.0), record(mixed, tflops=7.5), record(WEIGHT_ONLY, tflops=2.0),
            record(FNUZ, tflops=2.0), record(OPS[1], tflops=None),
            record(None, key="conformance/test_profile.py::test_fingerprint", tflops=1.0)]
    env = report(recs, device_name=device_name)["envelope"]
    got = {r["key"]: pct_peak(r, env) for r in recs}
    want = {r["key"]: r["case"] and expected_pct(r["case"], r["metrics"]["tflops"], device_name)
            for r in recs}
    assert got == want, got
    on_gpu = device_name == H100
    assert [got[key_of(c)] is not None for c in (OPS[0], mixed)] == [on_gpu, on_gpu], got
    assert got[key_of(WEIGHT_ONLY)] is None and got[key_of(FNUZ)] is None, got  # bf16 x fp8, fnuz


def throughput_lines(text: str) -> list[str]:
    section = text.split("### Kernel throughput", 1)[1]
    return section.split("\n### ", 1)[0].strip().splitlines()


@pytest.mark.parametrize("device_name", [H100, "test cpu"])
def test_markdown_throughput_section(device_name):
    recs = timed_records()
    rep = report(recs, device_name=device_name)
    text = render_markdown(rep)
    env = rep["envelope"]
    head = throughput_lines(text)[0]
    if device_name == H100:
        assert env["peak_tflops"] is not None
        assert f"published dense FP8 peak {env['peak_tflops']:.4g} TFLOP/s ({env['peak_source']})" \
            in head, head
    else:
        assert "no published FP8 peak for this device" in head, head
    tflops = [r["metrics"]["tflops"] for r in recs if r["metrics"].get("tflops") is not None]
    median = statistics.median(tflops)
    assert f"Median {median:.3g} TFLOP/s over {len(tflops)} timed cases." in head, head
    rows = table_rows(text, "### Kernel throughput")
    fastest = sorted((r for r in recs if r["metrics"].get("tflops") is not None),
                     key=lambda r: -r["metrics"]["tflops"])[:5]
    want = []
    for i, r in enumerate(fastest, 1):
        c, m = Case.from_id(r["case"]), r["metrics"]
        pct = expected_pct(r["case"], m["tflops"], device_name)
        want.append([str(i), f"`{r['case'].replace('|', chr(92) + '|')}`", f"{c.M}x{c.N}x{c.K}",
                     f"{m['kernel_s']:.3g}", f"{m['tflops']:.3g}", "-" if pct is None else f"{pct:.3g}"])
    assert rows == want, rows
    assert all((row[5] == "-") == (device_name != H100) for row in rows), rows


def test_markdown_no_throughput_section_without_timed_cases():
    text = render_markdown(report([record(OPS[0], tflops=None), record(OPS[1], "skip")]))
    assert "Kernel throughput" not in text, text


def test_markdown_written_report_shows_throughput_without_peak(md):
    assert "no published FP8 peak for this device" in throughput_lines(md)[0], md


def test_html_percent_peak_column(monkeypatch):
    monkeypatch.setattr(html_module, "_plots", lambda report, extra: [])
    recs = timed_records(3)
    rep = report(recs, device_name=H100)
    doc = render_html(rep)
    assert "<th>TFLOP/s</th><th>% peak</th>" in doc, doc
    for r in recs:
        pct = r["case"] and expected_pct(r["case"], r["metrics"].get("tflops"), H100)
        cell = "-" if pct is None else f"{pct:.4g}"
        row = next(x for x in doc.splitlines() if f"<code>{html.escape(r['case'])}</code>" in x
                   and x.startswith("<tr><td>"))
        assert row.endswith(f"<td class='n'>{cell}</td></tr>"), row
    env = rep["envelope"]
    assert f"{env['peak_tflops']:.4g} TFLOP/s dense ({html.escape(env['peak_source'])})" in doc


def without_peak(rep: dict) -> dict:
    """``rep`` as written before the envelope had the peak fields."""
    raw = schema.encode(rep)
    raw["envelope"] = {k: v for k, v in raw["envelope"].items() if k not in LATER_ENVELOPE_FIELDS}
    return raw


def test_old_report_without_peak_fields_loads_renders_and_diffs(tmp_path, capsys):
    rep = report(timed_records(), device_name=H100)
    old = write_raw(tmp_path, without_peak(rep))
    loaded = schema.load(old)
    assert not set(LATER_ENVELOPE_FIELDS) & set(loaded["envelope"]), loaded["envelope"]
    assert main(["diff", str(old), str(save(tmp_path / "new", rep))]) == 0, capsys.readouterr().out
    assert main(["render", str(old), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    env = schema.load(tmp_path / "out")["envelope"]
    assert {k: env[k] for k in LATER_ENVELOPE_FIELDS} == peak_fields(H100), env
    assert env["peak_tflops"] is not None and "### Kernel throughput" in (
        tmp_path / "out" / "tolerance.md").read_text()


def test_old_shard_reports_without_peak_fields_merge(tmp_path, capsys):
    dirs = []
    for name, rep in shard_reports():
        d = tmp_path / name.split("/")[0]
        d.mkdir()
        write_raw(d, without_peak(rep))
        dirs.append(str(d))
    assert main(["merge", *dirs, "-o", str(tmp_path / "merged")]) == 0, capsys.readouterr().err
    env = schema.load(tmp_path / "merged")["envelope"]
    assert {k: env[k] for k in LATER_ENVELOPE_FIELDS} == peak_fields(env["device_name"]), env


@pytest.mark.parametrize(("field", "value"), [("peak_tflops", "1979"), ("peak_source", 1979.0)])
def test_load_rejects_peak_field_of_wrong_type(tmp_path, raw, field, value):
    doc = {**raw, "envelope": {**raw["envelope"], field: value}}
    msg = load_error(write_raw(tmp_path, doc))
    assert repr(field) in msg, msg
