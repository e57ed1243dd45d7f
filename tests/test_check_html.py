"""``tools/check_html.py``: the headless-Chromium console check of tolerance.html catches a bad
page and passes a real report. Skipped where Debian's chromium is not installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_html  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                         else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                "(apt-get install chromium)")


def test_bad_page_reports_every_kind_of_problem(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><img src='missing.png'>"
                    "<script>console.error('boom'); undefinedFn();</script></body></html>")
    found = check_html.check(page, None, CHROMIUM)
    text = "\n".join(found)
    assert "console.error: boom" in text, found
    assert "undefinedFn" in text, found
    assert "ERR_FILE_NOT_FOUND" in text, found


def test_rendered_report_has_no_console_problems(tmp_path):
    from conformance.matrix import grid
    from conformance.report.write import write_reports

    cases = grid("smoke")
    records = [{"key": f"conformance/test_scaled_mm.py::test_scaled_mm[{c.id}]",
                "test": "test_scaled_mm", "case": c.id, "verdict": "pass" if i % 5 else "fail",
                "reason": None if i % 5 else "case FAILED: <b>bound</b>", "checks": [],
                "rerun": None, "duration_s": 0.1, "worker": "main",
                "metrics": {"elements": c.M * c.N, "max_abs_err": 0.5 * i, "max_ulps": float(i),
                            "rel_err": 1e-6 * (i + 1), "bound_use": 0.05 * i, "frac_exact": 0.9,
                            "rms_z": 0.1, "mean_z": 0.0, "kernel_s": 1e-4, "tflops": 0.01,
                            "sqnr_db": 30.0 + i if c.level == "layer" else None}}
               for i, c in enumerate(cases)]
    env = {"backend": "torch", "kernel": "torch._scaled_mm", "emulated": False, "profile": "fp32",
           "device": "cpu", "device_name": "test cpu", "driver": None, "runtime": None,
           "versions": {"numpy": "x"}, "git": {"revision": None, "dirty": None}, "grid": "smoke",
           "seed": 0, "shard": None, "merged_from": [], "golden": True, "timing_reps": 3,
           "command": "pytest", "date": "2026-01-01T00:00:00+00:00", "counts": {}}
    write_reports(env, records, tmp_path, step_summary=False)
    shot = tmp_path / "shot.png"
    found = check_html.check(tmp_path / "tolerance.html", shot, CHROMIUM)
    assert found == [], found
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
