"""Per-case tracking and the tolerance reports of a pytest run (``conformance/tracking.py``):
crash records under xdist, the same report with and without xdist, ``--shard`` and
``report merge``, the report files and their envelope, the step summary, JUnit properties,
the progress line, and ``report diff`` of a degraded kernel.

The suite runs in subprocesses at the repository root, always with ``--report-dir`` in a
temporary directory. Each subprocess run is done once per session and shared: the first test
that needs it runs it under a file lock in the session's temporary root (shared by the xdist
workers of this run), the others read its saved result.
"""

from __future__ import annotations

import datetime
import fcntl
import importlib.util
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from conformance.matrix import grid
from conformance.report import schema
from conformance.tracking import Tracker, in_shard, parse_shard
from kernel.broken import ABORT_CASE

ROOT = Path(__file__).resolve().parents[1]
SMOKE = grid("smoke")
SMOKE_IDS = [c.id for c in SMOKE]
NODEID = "conformance/test_scaled_mm.py::test_scaled_mm[{}]"
TIMING = {"kernel_s", "tflops"}
OTHER_ABORT_CASE = SMOKE_IDS[3]  # op channel/tensor M5xN24xK40, not ABORT_CASE
SUMMARY_PREFIX = "## an earlier step\n\nits summary\n"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not importable")

assert ABORT_CASE in SMOKE_IDS and OTHER_ABORT_CASE != ABORT_CASE


# =============================================================================================
# shared subprocess runs
# =============================================================================================


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    dir: Path
    started: float
    ended: float

    @property
    def report_dir(self) -> Path:
        return self.dir / "report"

    @property
    def out(self) -> str:
        return self.stdout[-4000:] + "\n--- stderr ---\n" + self.stderr[-3000:]

    def report(self) -> dict:
        return schema.load(self.report_dir)


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_XDIST_") and k not in
           ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "GITHUB_STEP_SUMMARY", "FP8_BROKEN_ABORT_CASE")}
    env.update(extra or {})
    return env


def _subprocess(cmd: list[str], env: dict | None = None, timeout: int = 600):
    return subprocess.run(cmd, cwd=ROOT, env=_env(env), capture_output=True, text=True,
                          timeout=timeout)


def _shared_root(factory) -> Path:
    base = factory.getbasetemp()
    # under xdist every worker's basetemp is <session basetemp>/popen-gwN: share the parent
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "fp8-tracking-runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def shared_run(factory, name: str, *args: str, env: dict | None = None, junit: bool = False,
               step_summary: bool = False) -> Run:
    """``pytest -p no:randomly ARGS --report-dir=<dir>/report`` at the repository root, run
    once per session (whichever xdist worker comes first) and shared."""
    root = _shared_root(factory)
    run_dir = root / name
    done = root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            run_dir.mkdir(exist_ok=True)
            env = dict(env or {})
            args = (*args, f"--report-dir={run_dir / 'report'}")
            if junit:
                args = (*args, f"--junitxml={run_dir / 'junit.xml'}")
            if step_summary:
                (run_dir / "summary.md").write_text(SUMMARY_PREFIX, encoding="utf-8")
                env["GITHUB_STEP_SUMMARY"] = str(run_dir / "summary.md")
            started = time.time()
            p = _subprocess([sys.executable, "-m", "pytest", "-p", "no:randomly", *args], env)
            done.write_text(json.dumps({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                                        "started": started, "ended": time.time()}))
        saved = json.loads(done.read_text())
    return Run(saved["rc"], saved["stdout"], saved["stderr"], run_dir, saved["started"],
               saved["ended"])


def report_cli(*args: str):
    return _subprocess([sys.executable, "-m", "conformance.report", *args])


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory) -> Run:
    return shared_run(tmp_path_factory, "crash", "--backend=broken-abort", "--grid=smoke",
                      "-n", "2", "conformance")


@pytest.fixture(scope="module")
def crash_run_other(tmp_path_factory) -> Run:
    return shared_run(tmp_path_factory, "crash-other", "--backend=broken-abort", "--grid=smoke",
                      "-n", "2", "conformance", env={"FP8_BROKEN_ABORT_CASE": OTHER_ABORT_CASE})


@pytest.fixture(scope="module")
def ref_serial(tmp_path_factory) -> Run:
    return shared_run(tmp_path_factory, "ref-serial", "--backend=reference", "--grid=smoke",
                      "-n", "0", "--progress-interval=0", "conformance")


@pytest.fixture(scope="module")
def ref_xdist(tmp_path_factory) -> Run:
    return shared_run(tmp_path_factory, "ref-xdist", "--backend=reference", "--grid=smoke",
                      "-n", "2", "--progress-interval=0.001", "conformance",
                      junit=True, step_summary=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Run]:
    # one shard without the xdist plugin at all, the others with it loaded but -n 0
    modes = {1: ("-p", "no:xdist"), 2: ("-n", "0"), 3: ("-n", "0")}
    return [shared_run(tmp_path_factory, f"shard-{i}", "--backend=reference", "--grid=smoke",
                       f"--shard={i}/3", *modes[i], "conformance") for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def suite_only_run(tmp_path_factory) -> Run:
    return shared_run(tmp_path_factory, "suite-only", "-q", "--progress-interval=0.001",
                      "tests/test_datasets.py")


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory) -> tuple[Run, Run]:
    if not HAVE_TORCH:
        pytest.skip("torch is not importable")
    return tuple(shared_run(tmp_path_factory, f"torch-{i}", "--backend=torch", "--grid=smoke",
                            "-n", "0", "conformance") for i in (1, 2))


@pytest.fixture(scope="module")
def degraded_run(tmp_path_factory) -> Run:
    if not HAVE_TORCH:
        pytest.skip("torch is not importable")
    return shared_run(tmp_path_factory, "degraded", "--backend=broken-degraded", "--grid=smoke",
                      "-n", "0", "conformance")


# =============================================================================================
# helpers
# =============================================================================================


def _by_key(report: dict) -> dict[str, dict]:
    return {r["key"]: r for r in report["records"]}


def _nan_safe(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def comparable(rec: dict) -> dict:
    """A record without what may differ between equivalent runs: timing, duration, worker."""
    return {"key": rec["key"], "test": rec["test"], "case": rec["case"], "verdict": rec["verdict"],
            "reason": rec["reason"], "checks": rec["checks"], "rerun": rec["rerun"],
            "metrics": {k: _nan_safe(v) for k, v in rec["metrics"].items() if k not in TIMING}}


def assert_same_records(a: dict, b: dict) -> None:
    ra, rb = _by_key(a), _by_key(b)
    assert set(ra) == set(rb), set(ra) ^ set(rb)
    for key in ra:
        assert comparable(ra[key]) == comparable(rb[key]), key


def _crashed_worker(reason: str) -> str:
    m = re.search(r"worker '(gw\d+)' crashed while running", reason)
    assert m, reason
    return m.group(1)


# =============================================================================================
# 1. crashes under xdist
# =============================================================================================


@pytest.mark.parametrize("which,case_id", [("default", ABORT_CASE), ("env", OTHER_ABORT_CASE)])
def test_crash_becomes_one_crashed_record_and_the_rest_pass(request, which, case_id):
    run = request.getfixturevalue("crash_run" if which == "default" else "crash_run_other")
    assert run.rc == 1, run.out
    report = run.report()
    recs = _by_key(report)
    assert set(recs) == {NODEID.format(c) for c in SMOKE_IDS}, run.out
    assert report["envelope"]["backend"] == "broken-abort"
    assert report["envelope"]["counts"] == {"crashed": 1, "pass": len(SMOKE) - 1}
    crashed = [r for r in recs.values() if r["verdict"] == "crashed"]
    assert [r["case"] for r in crashed] == [case_id]
    (rec,) = crashed
    assert rec["key"] == NODEID.format(case_id)
    assert rec["test"] == "test_scaled_mm"
    assert "crashed" in rec["reason"] and rec["key"] in rec["reason"], rec["reason"]
    assert rec["checks"] == ["crashed"] and rec["metrics"] == {}
    argv = shlex.split(rec["rerun"])
    assert argv[:2] == ["pytest", "conformance"] and "--backend=broken-abort" in argv, argv
    assert f"--case={case_id}" in argv, argv
    assert "--case=" in rec["rerun"]
    for r in recs.values():
        if r is rec:
            continue
        assert r["verdict"] == "pass", r
        assert r["reason"] is None and r["checks"] == []
        want = {"elements", "kernel_s"} | ({"max_abs_err", "max_ulps", "bound_use"}
                                           if r["metrics"].get("elements") else set())  # M=0: none
        assert want <= set(r["metrics"]), r
        assert r["worker"].startswith("gw"), r
        assert r["rerun"] and f"--case={r['case']}" in shlex.split(r["rerun"]), r


@pytest.mark.parametrize("fixture", ["crash_run", "crash_run_other"])
def test_crashed_workers_finished_cases_are_recovered_from_json_lines(request, fixture):
    """The crashed worker never sends its ``workeroutput``: what it had finished can only come
    from its JSON-lines file. xdist's load scheduling hands the first two chunks of two
    consecutive tests to the two workers ([0, 1] and [2, 3] with 19 tests), and the abort cases
    are the second of a chunk (smoke tests 1 and 3), so the crashed worker always finishes one
    case before it dies."""
    run = request.getfixturevalue(fixture)
    assert run.rc == 1, run.out
    recs = _by_key(run.report())
    (crash,) = [r for r in recs.values() if r["verdict"] == "crashed"]
    worker = _crashed_worker(crash["reason"])
    assert f"worker '{worker}' crashed" in run.stdout, run.out
    from_files = [r for r in recs.values() if r["worker"] == worker]
    assert from_files, (worker, sorted((r["worker"], r["case"]) for r in recs.values()))
    assert all(r["verdict"] == "pass" and r["metrics"] for r in from_files)
    crash_index = SMOKE_IDS.index(crash["case"])
    assert crash_index - 1 in {SMOKE_IDS.index(r["case"]) for r in from_files}, from_files
    # the union of the crashed worker's file, the others' workeroutput and the crash record
    assert len(recs) == len(SMOKE)


@pytest.mark.parametrize("fixture", ["crash_run", "crash_run_other"])
def test_no_json_lines_left_after_a_successful_write(request, fixture):
    run = request.getfixturevalue(fixture)
    assert (run.report_dir / "tolerance.json").is_file(), run.out
    records_dir = run.report_dir / "records"
    assert records_dir.is_dir()  # the workers wrote there
    assert sorted(p.name for p in records_dir.iterdir()) == []


def _fake_record(key: str, worker: str, verdict: str = "pass") -> dict:
    return {"key": key, "test": "test_scaled_mm", "case": key, "verdict": verdict, "reason": None,
            "checks": [], "rerun": None, "metrics": {"bound_use": 0.25}, "duration_s": 0.1,
            "worker": worker}


def test_recover_from_files_skips_a_truncated_line_and_other_runs(tmp_path):
    tracker = Tracker.__new__(Tracker)  # only what _recover_from_files uses
    tracker.records_dir = tmp_path / "records"
    tracker.records_dir.mkdir()
    tracker.run_id = "20250101-000000-abc123"
    # what a finished worker sent through workeroutput wins over its file
    sent = _fake_record("k-sent", "gw1", verdict="fail")
    tracker.records = {"k-sent": sent}
    lines = [json.dumps(_fake_record(f"k{i}", "gw0"), sort_keys=True) for i in range(3)]
    cut = json.dumps(_fake_record("k-cut", "gw0"), sort_keys=True)
    (tracker.records_dir / f"{tracker.run_id}-gw0.jsonl").write_text(
        "\n".join(lines) + "\n" + cut[: len(cut) // 2], encoding="utf-8")
    (tracker.records_dir / f"{tracker.run_id}-gw1.jsonl").write_text(
        json.dumps(_fake_record("k-sent", "gw1")) + "\n" + json.dumps(_fake_record("k3", "gw1"))
        + "\n", encoding="utf-8")
    (tracker.records_dir / "20240101-000000-ffffff-gw0.jsonl").write_text(
        json.dumps(_fake_record("k-old-run", "gw0")) + "\n", encoding="utf-8")
    Tracker._recover_from_files(tracker)
    assert set(tracker.records) == {"k0", "k1", "k2", "k3", "k-sent"}
    assert tracker.records["k-sent"] is sent
    assert tracker.records["k1"] == _fake_record("k1", "gw0")


# =============================================================================================
# 2. the same report with and without xdist
# =============================================================================================


def test_same_report_with_and_without_xdist(ref_serial, ref_xdist):
    assert ref_serial.rc == 0, ref_serial.out
    assert ref_xdist.rc == 0, ref_xdist.out
    serial, xdist = ref_serial.report(), ref_xdist.report()
    assert {r["key"] for r in serial["records"]} == {NODEID.format(c) for c in SMOKE_IDS}
    assert_same_records(serial, xdist)
    assert serial["envelope"]["counts"] == xdist["envelope"]["counts"] == {"pass": len(SMOKE)}
    assert {r["worker"] for r in serial["records"]} == {"main"}
    assert all(re.fullmatch(r"gw\d+", r["worker"]) for r in xdist["records"])
    for rec in serial["records"] + xdist["records"]:
        assert isinstance(rec["duration_s"], float) and rec["duration_s"] >= 0
        assert TIMING <= set(rec["metrics"]), rec


# =============================================================================================
# 3. shards
# =============================================================================================


def test_shards_partition_the_run(shards, ref_serial):
    assert ref_serial.rc == 0, ref_serial.out
    whole = {r["key"] for r in ref_serial.report()["records"]}
    seen: set[str] = set()
    for i, run in enumerate(shards, 1):
        assert run.rc == 0, run.out
        report = run.report()
        assert report["envelope"]["shard"] == f"{i}/3"
        keys = {r["key"] for r in report["records"]}
        assert keys == {k for k in whole if in_shard(k, (i, 3))}, i
        assert not keys & seen, keys & seen
        seen |= keys
    assert seen == whole


def test_merged_shards_equal_the_unsharded_run(shards, ref_serial, tmp_path):
    assert all(run.rc == 0 for run in shards), [run.out for run in shards]
    out = tmp_path / "merged"
    p = report_cli("merge", *(str(run.report_dir) for run in shards), "-o", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "tolerance.json").is_file() and (out / "tolerance.md").is_file()
    merged = schema.load(out / "tolerance.json")
    assert merged["envelope"]["merged_from"] == ["1/3", "2/3", "3/3"]
    assert merged["envelope"]["shard"] is None
    assert_same_records(merged, ref_serial.report())


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x"])
def test_bad_shard_is_a_usage_error(bad, tmp_path):
    p = _subprocess([sys.executable, "-m", "pytest", "-p", "no:randomly", "--backend=reference",
                     "--grid=smoke", f"--shard={bad}", f"--report-dir={tmp_path}",
                     "--collect-only", "-q", "conformance"], timeout=300)
    assert p.returncode == 4, p.stdout[-2000:] + p.stderr[-2000:]
    assert "--shard" in p.stderr and bad in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_parse_shard():
    assert parse_shard(None) is None
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard("1/1") == (1, 1)
    for bad in ("0/3", "4/3", "x", "1/0", "1/2/3", "", "a/b"):
        with pytest.raises(pytest.UsageError, match="--shard"):
            parse_shard(bad)


def test_in_shard_partitions_any_ids_exactly_and_stably():
    rng = random.Random(1234)
    ids = [NODEID.format(c) for c in SMOKE_IDS]
    ids += [f"conformance/test_x.py::test_{rng.getrandbits(64):x}[{i}]" for i in range(300)]
    for n in (1, 2, 3, 5, 8):
        owners = {nid: [i for i in range(1, n + 1) if in_shard(nid, (i, n))] for nid in ids}
        assert all(len(o) == 1 for o in owners.values()), n
        shard_of = {nid: o[0] for nid, o in owners.items()}
        assert set(shard_of.values()) == set(range(1, n + 1)), n  # 300 random ids: none empty
        # a fixed id's shard is the same whatever else is in the list, in whatever order
        for _ in range(5):
            subset = rng.sample(ids, 37)
            for i in range(1, n + 1):
                assert {nid for nid in subset if in_shard(nid, (i, n))} == \
                    {nid for nid in subset if shard_of[nid] == i}


# =============================================================================================
# 4. the report files of a run
# =============================================================================================


def test_report_files_and_envelope(ref_xdist):
    assert ref_xdist.rc == 0, ref_xdist.out
    for ext in ("json", "md", "html"):
        assert (ref_xdist.report_dir / f"tolerance.{ext}").is_file(), ext
    md = (ref_xdist.report_dir / "tolerance.md").read_text(encoding="utf-8")
    assert 0 < len(md) < 65_000
    assert (ref_xdist.report_dir / "tolerance.html").read_text(encoding="utf-8").lstrip() \
        .lower().startswith("<!doctype html")
    env = ref_xdist.report()["envelope"]
    assert env["backend"] == "reference" and env["device"] == "cpu"
    assert env["grid"] == "smoke" and env["seed"] == 0 and env["shard"] is None
    assert isinstance(env["device_name"], str) and env["device_name"]
    argv = shlex.split(env["command"])
    assert argv[0] == "pytest" and "--backend=reference" in argv and "--grid=smoke" in argv, argv
    assert any(a.startswith("--report-dir=") for a in argv), argv
    assert env["versions"]["numpy"] == metadata.version("numpy")
    assert "torch" in env["versions"]
    assert env["versions"]["torch"] == (metadata.version("torch") if HAVE_TORCH else None)
    date = datetime.datetime.fromisoformat(env["date"])
    assert date.utcoffset() == datetime.timedelta(0), env["date"]
    started = datetime.datetime.fromtimestamp(math.floor(ref_xdist.started), datetime.UTC)
    ended = datetime.datetime.fromtimestamp(ref_xdist.ended, datetime.UTC)
    assert started <= date <= ended, (env["date"], started, ended)
    # the start of the run (pytest's own session start, in the JUnit XML), not its end
    suite = ET.parse(ref_xdist.dir / "junit.xml").getroot().find("testsuite")
    junit_start = datetime.datetime.fromisoformat(suite.get("timestamp"))
    assert abs(date - junit_start) <= datetime.timedelta(seconds=3), (env["date"], junit_start)


def test_markdown_is_appended_to_the_step_summary(ref_xdist):
    assert ref_xdist.rc == 0, ref_xdist.out
    md = (ref_xdist.report_dir / "tolerance.md").read_text(encoding="utf-8")
    summary = (ref_xdist.dir / "summary.md").read_text(encoding="utf-8")
    assert summary == SUMMARY_PREFIX + md + "\n"
    assert "Markdown appended to $GITHUB_STEP_SUMMARY" in ref_xdist.stdout


def test_junit_xml_carries_the_metrics_as_properties(ref_xdist):
    assert ref_xdist.rc == 0, ref_xdist.out
    text = (ref_xdist.dir / "junit.xml").read_text(encoding="utf-8")
    assert '<property name="bound_use"' in text
    recs = {r["case"]: r for r in ref_xdist.report()["records"]}
    cases = ET.fromstring(text).findall(".//testcase")
    assert len(cases) == len(SMOKE)
    for tc in cases:
        case_id = re.fullmatch(r"test_scaled_mm\[(.*)\]", tc.get("name")).group(1)
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        metrics = recs[case_id]["metrics"]
        if metrics["elements"]:  # an empty output (M=0) measures no error
            assert {"bound_use", "max_ulps", "max_abs_err"} <= set(props), props
        assert props["rerun"] == recs[case_id]["rerun"]
        for name, value in metrics.items():  # the same values as the report's
            assert name in props, (case_id, name)
            if value is None:
                assert props[name] == "None", (case_id, name)
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(float(props[name])), (case_id, name)
            else:
                assert float(props[name]) == value, (case_id, name, props[name])


def _progress_lines(stdout: str) -> list[str]:
    return re.findall(r"^\[fp8\] .*$", stdout, flags=re.M)


def test_progress_lines_at_most_one_per_case(ref_xdist, ref_serial):
    assert ref_xdist.rc == 0, ref_xdist.out
    lines = _progress_lines(ref_xdist.stdout)
    assert 1 <= len(lines) <= len(SMOKE), ref_xdist.out
    pat = r"\[fp8\] (\d+)/(\d+|\?) done, 0 failed, 0 crashed, \d+ s; (worst bound use \S+ in .+" \
          r"|no error measured yet)"
    done = []
    for ln in lines:
        m = re.fullmatch(pat, ln)
        assert m, ln
        done.append(int(m.group(1)))
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] <= len(SMOKE), lines
    assert not _progress_lines(ref_serial.stdout)  # --progress-interval=0: none


def test_progress_line_names_the_total_under_xdist(ref_xdist):
    """``done/total``: under xdist the controller collects nothing itself, so the total must
    come from the workers' collections, not from the terminal reporter's own count."""
    assert ref_xdist.rc == 0, ref_xdist.out
    lines = _progress_lines(ref_xdist.stdout)
    assert lines, ref_xdist.out
    totals = {re.match(r"\[fp8\] \d+/(\S+) done", ln).group(1) for ln in lines}
    assert totals == {str(len(SMOKE))}, lines


def test_suite_only_run_writes_no_report(suite_only_run):
    run = suite_only_run
    assert run.rc == 0, run.out
    assert re.search(r"\b\d+ passed\b", run.stdout), run.out
    assert not run.report_dir.exists(), sorted(str(x) for x in run.report_dir.rglob("*"))
    assert "tolerance report" not in run.stdout


def test_suite_only_run_prints_no_progress_line(suite_only_run):
    """The worst-so-far line is about conformance cases; the suite's own tests are not
    tracked, so a run of only them has nothing to report progress on."""
    assert suite_only_run.rc == 0, suite_only_run.out
    assert not _progress_lines(suite_only_run.stdout), _progress_lines(suite_only_run.stdout)[:3]


# =============================================================================================
# 5. diff of a degraded kernel
# =============================================================================================


@needs_torch
def test_diff_of_degraded_kernel_reports_regressions(torch_runs, degraded_run):
    base, _ = torch_runs
    assert base.rc == 0, base.out
    assert (degraded_run.report_dir / "tolerance.json").is_file(), degraded_run.out
    p = report_cli("diff", str(base.report_dir), str(degraded_run.report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "REGRESSIONS" in p.stdout, p.stdout
    m = re.search(r"summary: (\d+) regressions", p.stdout)
    assert m and int(m.group(1)) >= 1, p.stdout


@needs_torch
def test_diff_of_two_identical_torch_runs_is_clean(torch_runs):
    a, b = torch_runs
    assert a.rc == 0 and b.rc == 0, a.out + b.out
    p = report_cli("diff", str(a.report_dir), str(b.report_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 regressions" in p.stdout and "REGRESSIONS" not in p.stdout, p.stdout
