"""Per-case records, crash-safe collection under xdist, shards, progress and the report files.

How it works (the same code with and without xdist):

1. Where tests run (an xdist worker, or the only process), ``pytest_runtest_makereport``
   turns each finished conformance test into a plain-dict record (``report.schema``:
   verdict, reason, failed checks, the metrics the test stored with ``record_property``).
   Each record is appended to ``<report-dir>/records/<run>-<worker>.jsonl`` and flushed at
   once, so a worker that dies loses nothing it had finished.
2. At the end of a worker, its records go to the controller in ``workeroutput``
   (``pytest_testnodedown``), with its backend resolution and the envelope's run fields for
   a controller that left the default backend to its workers (``resolution.py``). The
   controller then reads the JSON-lines files of the run to recover what crashed workers
   had finished, and turns xdist's "worker crashed while running" reports into ``crashed``
   records.
3. The controller (or the only process) writes ``tolerance.json``, ``tolerance.md`` and
   ``tolerance.html``, appends the Markdown to ``$GITHUB_STEP_SUMMARY`` when set, and prints
   one worst-so-far line every ``--progress-interval`` seconds while the run goes on.

``--shard i/n`` keeps the tests whose node id hashes (blake2b) to ``i - 1`` modulo ``n``: the
partition depends on nothing but the ids, so every runner computes the same one.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

import pytest

from .checks import rerun_command
from .report import schema
from .report.envelope import make_envelope, run_fields
from .report.write import write_reports
from .resolution import adopt, resolve, resolved, worker_facts
from .vllm_tables import report_tables

__all__ = ["Tracker", "parse_shard", "in_shard", "case_of_nodeid"]

SUITE_DIR = Path(__file__).resolve().parent


@functools.cache
def _in_suite(root: str, path: str) -> bool:
    """Whether the test module at ``path`` (relative to ``root``, or absolute) is one of the
    conformance modules; cached, since every report asks it (resolving the path took 0.2 ms,
    three times a test, on the xdist controller)."""
    return (Path(root) / path).resolve().parent == SUITE_DIR


_REASON_LIMIT = 4000


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` as ``(i, n)`` with 1 <= i <= n; a bad value raises ``pytest.UsageError``."""
    if text is None:
        return None
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--shard={text!r}: expected i/n, e.g. --shard 2/3") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"--shard={text!r}: need 1 <= i <= n")
    return i, n


EMULATED_PREFIX = "emulated:"  # test ids of --emulate-xpu runs carry it; case ids do not


def in_shard(nodeid: str, shard: tuple[int, int]) -> bool:
    """Whether ``nodeid`` belongs to ``shard`` = (i, n)."""
    i, n = shard
    h = int.from_bytes(hashlib.blake2b(nodeid.encode(), digest_size=8).digest(), "big")
    return h % n == i - 1


def case_of_nodeid(nodeid: str) -> tuple[str, str | None]:
    """``(test name, case id or None)`` from a node id like ``path::test_x[<case id>]``."""
    name = nodeid.rsplit("::", 1)[-1]
    base, bracket, rest = name.partition("[")
    return base, (rest[:-1].removeprefix(EMULATED_PREFIX) if bracket and rest.endswith("]")
                  else None)


def _record(item, rep, worker: str) -> dict:
    props = dict(item.user_properties)
    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    if rep.passed:
        verdict, reason = "pass", None
    elif rep.skipped:
        verdict = "skip"
        reason = (rep.longrepr[2].removeprefix("Skipped: ") if isinstance(rep.longrepr, tuple)
                  else str(rep.longrepr))
    else:
        verdict = "fail" if rep.when == "call" else "error"
        reason = rep.longreprtext[:_REASON_LIMIT]
    checks = props.pop("failed_checks", "")
    tables = props.pop("tables", None)  # report tables a test measured (test_profile.py)
    rerun = props.pop("rerun", None)
    metrics = {k: v for k, v in props.items() if k in schema.METRIC_FIELDS}
    return schema.encode({
        **({"tables": json.loads(tables)} if tables else {}),
        "key": item.nodeid,
        "test": item.originalname,
        "case": None if case is None else str(case),
        "verdict": verdict,
        "reason": reason,
        "checks": [c for c in checks.split(",") if c],
        "rerun": rerun,
        "metrics": metrics,
        "duration_s": rep.duration,
        "worker": worker,
    })


class Tracker:
    """The pytest plugin object; one per process (controller, worker, or the only one)."""

    def __init__(self, config):
        self.config = config
        opt = config.option
        self.report_dir = Path(opt.report_dir)
        self.records_dir = self.report_dir / "records"
        self.shard = parse_shard(opt.shard)
        winput = getattr(config, "workerinput", None)
        self.is_worker = winput is not None
        self.worker = winput["workerid"] if winput else "main"
        self.run_id = (winput or {}).get("fp8_run_id") or (
            time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6])
        self.records: dict[str, dict] = {}
        self.crashed: dict[str, str] = {}
        self._root = str(config.rootpath)  # node ids' files are relative to it
        self._jsonl = None
        self._tracked_any = False
        self.started = time.time()
        self.start_date = datetime.datetime.now(datetime.UTC)
        # progress (controller)
        self.interval = opt.progress_interval
        self._last_line = time.monotonic()
        self._done = 0
        self._failed = 0
        self._worst: tuple[float, str] | None = None
        self._session = None

    def pytest_sessionstart(self, session):
        self._session = session

    # -- selection -------------------------------------------------------------------------
    def pytest_collection_modifyitems(self, config, items):
        """Keep only this shard's tests (``--shard``)."""
        if self.shard is None:
            return
        keep, drop = [], []
        for item in items:
            (keep if in_shard(item.nodeid, self.shard) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    # -- records, where tests run ----------------------------------------------------------
    @staticmethod
    def tracked(item) -> bool:
        """Conformance tests (modules of ``conformance/``) are tracked; the suite's own tests
        under ``tests/`` are not."""
        return _in_suite("/", str(item.path))

    def _tracked_nodeid(self, nodeid: str) -> bool:
        """:meth:`tracked` for a report (the controller has node ids, not items)."""
        return _in_suite(self._root, nodeid.partition("::")[0])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        rep = yield
        if self.tracked(item) and (rep.when == "call" or (rep.when == "setup" and not rep.passed)):
            self._add(_record(item, rep, self.worker))
        return rep

    def _add(self, record: dict) -> None:
        self.records[record["key"]] = record
        if self._jsonl is None:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            path = self.records_dir / f"{self.run_id}-{self.worker}.jsonl"
            self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed at finish)
        self._jsonl.write(json.dumps(record, sort_keys=True) + "\n")
        self._jsonl.flush()

    # -- xdist: controller side (optional hooks: never called without xdist) ----------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        """Hand the run id to each worker (names its records file)."""
        node.workerinput["fp8_run_id"] = self.run_id

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """Take a finished worker's records (a crashed worker has none: see the files) and, on
        a controller that has not resolved the backend, its resolution."""
        output = getattr(node, "workeroutput", {})
        for rec in output.get("fp8_records", []):
            self.records[rec["key"]] = rec
        if output.get("fp8_facts"):
            adopt(self.config, output["fp8_facts"])

    # -- progress and crashes, on the controller -------------------------------------------
    def pytest_runtest_logreport(self, report):
        if self.is_worker or not self._tracked_nodeid(report.nodeid):
            return
        if report.when == "???" or (report.failed
                                    and "crashed while running" in str(report.longrepr or "")):
            self.crashed[report.nodeid] = str(report.longrepr)
        elif not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        self._progress(report)

    def _progress(self, report) -> None:
        self._done += 1
        self._failed += report.failed
        props = dict(report.user_properties)
        use = props.get("bound_use")
        if isinstance(use, int | float) and (self._worst is None or use > self._worst[0]):
            self._worst = (use, case_of_nodeid(report.nodeid)[1] or report.nodeid)
        if self.interval <= 0 or time.monotonic() - self._last_line < self.interval:
            return
        self._last_line = time.monotonic()
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        total = getattr(self._session, "testscollected", 0) or "?"
        worst = (f"worst bound use {self._worst[0]:.3g} in {self._worst[1]}" if self._worst
                 else "no error measured yet")
        if not getattr(tr, "currentfspath", None):
            tr.write("\n")  # under xdist the dots leave the cursor mid-line
        tr.write_line(f"[fp8] {self._done}/{total} done, {self._failed} failed, "
                      f"{len(self.crashed)} crashed, {time.time() - self.started:.0f} s; {worst}")

    # -- end of session ---------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self._jsonl is not None:
            self._jsonl.close()
        if self.is_worker:
            out = self.config.workeroutput
            out["fp8_records"] = list(self.records.values())
            if resolved(self.config):
                out["fp8_facts"] = worker_facts(self.config, self._run())
            return
        self._recover_from_files()
        if not (self.records or self.crashed):
            return  # no conformance test ran (e.g. the suite's own tests): no report
        run = self._run()
        opt = self.config.option
        for nodeid, message in self.crashed.items():
            test, case = case_of_nodeid(nodeid)
            self.records[nodeid] = {
                "key": nodeid, "test": test, "case": case, "verdict": "crashed",
                "reason": message, "checks": ["crashed"],
                "rerun": case and rerun_command(case, opt.backend, opt.device, opt.seed,
                                                run["emulated"]),
                "metrics": {}, "duration_s": None, "worker": None}
        try:
            records = list(self.records.values())
            tables = self.tables(records)  # first: it takes the tables off the records
            self.paths = write_reports(self.envelope(run), records, self.report_dir,
                                       tables=tables)
        except Exception as exc:  # the run's verdicts stand; say what was not written
            self.write_error = f"{type(exc).__name__}: {exc}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            self.paths = [p for p in (self.report_dir / f"tolerance.{e}" for e in ("json", "md"))
                          if p.exists()]
            return
        for path in self.records_dir.glob(f"{self.run_id}-*.jsonl"):
            path.unlink()  # in the report now; files stay only if this process dies first

    def tables(self, records: list[dict]) -> dict:
        """The report's tables: those tests measured and left on their records (the probe
        fingerprint and profile check, taken off the records here) and the backend's own
        (vLLM selection and capability)."""
        tables = {}
        for rec in records:
            tables.update(rec.pop("tables", None) or {})
        tables.update(report_tables(self.config.option.backend, records))
        return tables

    def _recover_from_files(self) -> None:
        for path in sorted(self.records_dir.glob(f"{self.run_id}-*.jsonl")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a dying worker
                    self.records.setdefault(rec["key"], rec)

    def _run(self) -> dict:
        """The envelope's run fields (``run_fields``): a worker's, on an xdist controller
        that left resolution to its workers; else this process's own (resolved now if it
        had not been)."""
        run = getattr(self.config, "_fp8_run", None)
        if run is None:
            resolve(self.config)
            run = run_fields(self.config._fp8_adapter, self.config.option.device)
        return run

    def envelope(self, run: dict | None = None) -> dict:
        opt = self.config.option
        args = self.config.invocation_params.args
        return make_envelope(
            run=run or self._run(),
            grid="case" if opt.case else opt.grid, seed=opt.seed,
            shard=None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            golden=self.config._fp8_store is not None, timing_reps=opt.timing_reps,
            command=shlex.join(["pytest", *args]) if args is not None else " ".join(sys.argv),
            date=self.start_date)

    def pytest_terminal_summary(self, terminalreporter):
        paths = getattr(self, "paths", None)
        error = getattr(self, "write_error", None)
        if error:
            terminalreporter.section("tolerance report", red=True)
            terminalreporter.write_line(f"writing the report failed: {error}; the records are "
                                        f"in {self.records_dir} (JSON lines)", red=True)
            return
        if not paths:
            return
        counts = {}
        for rec in self.records.values():
            counts[rec["verdict"]] = counts.get(rec["verdict"], 0) + 1
        terminalreporter.section("tolerance report")
        terminalreporter.write_line(
            ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + "; written: " +
            ", ".join(str(p) for p in paths))
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            terminalreporter.write_line("Markdown appended to $GITHUB_STEP_SUMMARY")
