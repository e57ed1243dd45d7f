"""The suite's command line (``conformance/plugin.py`` via the root ``conftest.py``): option
validation, the report header, ``--case`` reruns and the skip-reason summary.

Every check runs pytest in a subprocess in the repository root (the suite's conftest lives
there). Two throwaway backends are registered through a ``-p`` plugin written by pytester:
``broken-ulp`` (the reference plus one output ulp on element [0, 0]: fails under its exact
profile) and ``picky`` (the reference, skipping every case whose M is not 17).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from conformance.matrix import grid, grid_names
from kernel.registry import backend_names, default_backend_and_device

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import numpy as np

from golden.bounds import ulp
from kernel.base import KernelRun
from kernel.reference import ReferenceAdapter
from kernel.registry import register


@register("broken-ulp")
class BrokenUlp(ReferenceAdapter):
    description = "reference plus one output ulp on element [0, 0]"

    def run(self, data, device, reps=0):
        r = super().run(data, device)
        y = r.values.copy()
        if y.size and np.isfinite(y[0, 0]):
            y[0, 0] += float(ulp(abs(y[0, 0]) or 1.0, data.case.out))
        return KernelRun(y, r.seconds)


@register("picky")
class Picky(ReferenceAdapter):
    description = "reference that only takes M = 17"

    def why_not(self, case, device):
        return None if case.M == 17 else f"picky: M={case.M} is not 17"
'''

SMOKE = grid("smoke")
NK_ID = "op|w=tensor,a=tensor|e4m3|bf16|bias=none|M7xN24xK24|b=nk|sa=[],sb=[]|set=gauss"
ONE_ID = SMOKE[0].id


def run_pytest(*args, plugin_dir: Path | None = None, timeout=180):
    """pytest in a subprocess at the repository root; its reports go to a fresh temporary
    directory unless ``args`` name one (never into the checkout's reports/)."""
    if not any(a.startswith("--report-dir") for a in args):
        args = (*args, f"--report-dir={tempfile.mkdtemp(prefix='fp8-report-')}")
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", *args]
    if plugin_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), env.get("PYTHONPATH", "")])
        cmd[3:3] = ["-p", "fp8_test_backends"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def plugin_dir(pytester):
    pytester.makepyfile(fp8_test_backends=PLUGIN)
    return pytester.path


def summary(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if re.search(r"\d+ (passed|failed|skipped|"
                                                          r"tests? collected|error)", ln)]
    return lines[-1] if lines else ""


# =============================================================================================
# usage errors
# =============================================================================================


@pytest.mark.parametrize("option,valid", [
    ("--backend=nope", backend_names()),
    ("--grid=nope", grid_names()),
    ("--device=tpu", ["cpu", "cuda", "xpu"]),
    ("--backend=reference --device=tpu", ["cpu", "cuda", "xpu"]),
    ("--reference-device=tpu", ["numpy", "cpu", "cuda", "xpu"]),
])
def test_unknown_value_is_a_usage_error_listing_valid_values(option, valid):
    p = run_pytest(*shlex.split(option), "--collect-only", "-q")
    assert p.returncode == 4, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    bad = option.split()[-1].split("=")[1]
    assert repr(bad) in p.stderr or bad in p.stderr, p.stderr
    for v in valid:
        assert v in p.stderr, (v, p.stderr)
    assert "collected" not in p.stdout


@pytest.mark.parametrize("bad", ["garbage", "op|w=tensor,a=tensor|e4m3|bf16|bias=none|M1xN1"
                                 "|b=kn-t|sa=[],sb=[]|set=gauss", NK_ID.replace("e4m3", "e9m9")])
def test_malformed_case_is_a_usage_error(bad):
    p = run_pytest("--backend=reference", f"--case={bad}", "--collect-only", "-q")
    assert p.returncode == 4, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "--case" in p.stderr and bad[:20] in p.stderr, p.stderr


# =============================================================================================
# runs and the header
# =============================================================================================


def test_smoke_grid_with_reference_passes_and_header_names_it():
    p = run_pytest("--grid=smoke", "--backend=reference", "conformance")
    assert p.returncode == 0, p.stdout[-3000:]
    header = [ln for ln in p.stdout.splitlines() if ln.startswith("fp8 conformance:")]
    assert len(header) == 1, p.stdout[:2000]
    assert "backend=reference" in header[0] and "grid=smoke" in header[0]
    assert "device=cpu" in header[0] and "seed=0" in header[0]
    assert "accumulation profile: exact" in p.stdout
    assert re.search(rf"\b{len(SMOKE)} passed\b", summary(p.stdout)), summary(p.stdout)
    assert not re.search(r"failed|skipped|error", summary(p.stdout)), summary(p.stdout)


def test_default_backend_is_named_in_the_header():
    want_backend, want_device = default_backend_and_device()
    assert want_backend == "torch"  # torch is installed: torch on cpu is this machine's best
    p = run_pytest("--grid=smoke", "--collect-only")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    header = [ln for ln in p.stdout.splitlines() if ln.startswith("fp8 conformance:")]
    assert len(header) == 1
    assert f"backend={want_backend} device={want_device} grid=smoke" in header[0], header


CONTROLLER_PROBE = '''
import os, sys


def pytest_sessionfinish(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        with open(os.environ["FP8_PROBE_OUT"], "w") as f:
            f.write(str("torch" in sys.modules))
'''


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "header"])
def test_xdist_controller_leaves_the_default_backend_to_its_workers(pytester, quiet):
    """With no --backend, the xdist controller does not import torch before its workers
    start: quiet, never (the report takes the workers' resolution); with the header shown,
    it resolves there. Either way the report's envelope is the serial run's."""
    pytester.makepyfile(fp8_controller_probe=CONTROLLER_PROBE)
    envelopes = {}
    for label, args in (("serial", ["-n", "0"]), ("xdist", ["-n", "2"])):
        out = pytester.path / label
        probe = pytester.path / f"{label}.probe"
        env = dict(os.environ, FP8_PROBE_OUT=str(probe),
                   PYTHONPATH=os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "fp8_controller_probe",
               *(["-q"] if quiet else []), *args, "--grid=smoke", f"--report-dir={out}",
               "conformance/test_scaled_mm.py"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert ("fp8 conformance: backend=torch device=cpu" in p.stdout) is not quiet, p.stdout[:1500]
        envelopes[label] = json.loads((out / "tolerance.json").read_text())["envelope"]
        if label == "xdist":
            assert probe.read_text() == str(not quiet)
    fields = ("backend", "kernel", "emulated", "profile", "device", "device_name", "driver",
              "runtime", "peak_tflops", "timing_reps", "versions")
    assert {k: envelopes["xdist"][k] for k in fields} == {k: envelopes["serial"][k] for k in fields}


HYPOTHESIS_PROBE = '''
import os, sys


def pytest_unconfigure(config):
    who = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.environ["FP8_PROBE_OUT"], who), "w") as f:
        f.write(str("hypothesis" in sys.modules))
'''


@pytest.mark.parametrize("workers", ["0", "2"])
def test_hypothesis_plugin_is_dropped_only_where_no_test_used_it(pytester, workers):
    """A conformance run never imports hypothesis (its pytest plugin's summary would, in
    every process); a run of a hypothesis test keeps the plugin and its statistics."""
    pytester.makepyfile(fp8_hypothesis_probe=HYPOTHESIS_PROBE)
    for label, args in (("conformance", ["--grid=smoke", "conformance/test_scaled_mm.py"]),
                        ("hypothesis", ["--hypothesis-show-statistics",
                                        "tests/test_codecs.py::"
                                        "test_round_float64_matches_exact_reference_hypothesis"])):
        out = pytester.mkdir(f"{label}-{workers}")
        env = dict(os.environ, FP8_PROBE_OUT=str(out),
                   PYTHONPATH=os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
               "fp8_hypothesis_probe", "-n", workers, f"--report-dir={out / 'report'}", *args]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        seen = {f.name: f.read_text() for f in out.iterdir() if f.is_file()}
        assert len(seen) == (1 if workers == "0" else 3), seen
        if label == "conformance":
            assert set(seen.values()) == {"False"}, seen
        else:
            assert "Hypothesis Statistics" in p.stdout, p.stdout[-2000:]


def test_case_option_collects_exactly_one_test():
    p = run_pytest("--backend=reference", f"--case={ONE_ID}", "--collect-only", "-q",
                   "conformance")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert re.search(r"\b1 tests? collected\b", p.stdout), p.stdout[-2000:]
    items = [ln for ln in p.stdout.splitlines() if "::" in ln]
    assert len(items) == 1 and ONE_ID in items[0]


def test_failure_rerun_line_reruns_exactly_that_case(plugin_dir):
    p = run_pytest("--grid=smoke", "--backend=broken-ulp", "conformance", "-rf",
                   plugin_dir=plugin_dir)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-2000:]
    reruns = re.findall(r"^\s*rerun: (.*)$", p.stdout, flags=re.M)
    assert reruns, p.stdout[-3000:]
    failed = re.search(r"(\d+) failed", summary(p.stdout))
    assert failed and int(failed.group(1)) >= len(SMOKE) - 3, summary(p.stdout)
    argv = shlex.split(reruns[0])
    assert argv[:2] == ["pytest", "conformance"] and "--backend=broken-ulp" in argv
    case_id = next(a for a in argv if a.startswith("--case=")).split("=", 1)[1]
    assert case_id in {c.id for c in SMOKE}
    assert f"case {case_id} FAILED" in p.stdout
    q = run_pytest(*argv[1:], plugin_dir=plugin_dir)
    assert q.returncode == 1, q.stdout[-3000:]
    assert re.search(r"\b1 failed\b", summary(q.stdout)), summary(q.stdout)
    assert "passed" not in summary(q.stdout)
    # Every rerun line names that one case (with CI set, pytest repeats the full message in
    # its short summary, so the line may appear twice).
    assert set(re.findall(r"^\s*rerun: (.*)$", q.stdout, flags=re.M)) == {reruns[0]}


# =============================================================================================
# skips by reason
# =============================================================================================


def _skip_section(stdout: str) -> Counter:
    m = re.search(r"=+ skips by reason =+\n(.*?)(?:\n=|\Z)", stdout, flags=re.S)
    assert m, stdout[-3000:]
    out = Counter()
    for ln in m.group(1).splitlines():
        if not ln.strip():
            continue
        n, _, reason = ln.strip().partition("  ")
        out[reason.strip()] += int(n)
    return out


def test_torch_skip_of_nk_layout_is_counted():
    p = run_pytest("--backend=torch", f"--case={NK_ID}", "conformance")
    assert p.returncode == 0, p.stdout[-3000:]
    assert re.search(r"\b1 skipped\b", summary(p.stdout)), summary(p.stdout)
    tally = _skip_section(p.stdout)
    assert list(tally.values()) == [1], tally
    (reason,) = tally
    assert reason.startswith("torch/cpu: weight layout 'nk' not accepted"), reason


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist-2"])
def test_skip_reasons_are_counted_per_reason(plugin_dir, xdist):
    args = ["--grid=smoke", "--backend=picky", "conformance"] + (["-n", "2"] if xdist else [])
    p = run_pytest(*args, plugin_dir=plugin_dir)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    want = Counter(f"picky/cpu: picky: M={c.M} is not 17" for c in SMOKE if c.M != 17)
    assert _skip_section(p.stdout) == want
    n_run = sum(c.M == 17 for c in SMOKE)
    assert re.search(rf"\b{n_run} passed, {sum(want.values())} skipped\b", summary(p.stdout)), \
        summary(p.stdout)


def test_no_skip_section_without_skips():
    p = run_pytest("--backend=reference", f"--case={ONE_ID}", "conformance")
    assert p.returncode == 0, p.stdout[-3000:]
    assert "skips by reason" not in p.stdout


# --- xdist workers share the cores --------------------------------------------------------


@pytest.mark.parametrize("workers, cpus, expect", [(2, 2, "1"), (2, 8, "4"), (3, 2, "1")])
def test_xdist_workers_get_their_share_of_the_cores(monkeypatch, workers, cpus, expect):
    from types import SimpleNamespace

    from conformance.plugin import THREAD_VARS, share_cores

    for var in THREAD_VARS + ("PYTEST_XDIST_WORKER",):
        monkeypatch.setenv(var, "")  # recorded, so that teardown undoes what share_cores sets
        monkeypatch.delenv(var)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the user's own choice is kept
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert share_cores(SimpleNamespace(option=SimpleNamespace(numprocesses=workers))) == int(expect)
    assert os.environ["OMP_NUM_THREADS"] == expect == os.environ["OPENBLAS_NUM_THREADS"]
    assert os.environ["MKL_NUM_THREADS"] == "7"


def test_no_thread_limit_without_xdist_or_inside_a_worker(monkeypatch):
    from types import SimpleNamespace

    from conformance.plugin import share_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert share_cores(SimpleNamespace(option=SimpleNamespace(numprocesses=0))) is None
    assert share_cores(SimpleNamespace(option=SimpleNamespace())) is None
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert share_cores(SimpleNamespace(option=SimpleNamespace(numprocesses=2))) is None
    assert "OMP_NUM_THREADS" not in os.environ


def test_reference_device_without_that_device_is_a_usage_error():
    import torch

    missing = [d for d in ("cuda", "xpu") if not getattr(torch, d).is_available()]
    if not missing:
        pytest.skip("this machine has both cuda and xpu")
    p = run_pytest(f"--reference-device={missing[0]}", "--collect-only", "-q")
    assert p.returncode == 4, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert f"sees no {missing[0]} device" in p.stderr and "numpy" in p.stderr, p.stderr


def test_each_case_input_is_computed_once_and_the_summary_says_so():
    """Over two workers, the op cases at the mixed-granularity shape (computed: not in the
    store) and the mixed-granularity test that reuses them for three orders: every case's
    inputs are computed once, and the summary line counts them."""
    p = run_pytest("--grid=default", "--backend=reference", "-n", "2", "-k",
                   "M17xN64xK128 or mixed", "conformance/test_scaled_mm.py",
                   "conformance/test_mixed_granularity.py")
    assert p.returncode == 0, p.stdout[-3000:]
    m = re.search(r"case inputs: (\d+) read from the golden store, (\d+) computed; (\d+) "
                  r"computed more than once", p.stdout)
    assert m, p.stdout[-3000:]
    read, computed, twice = map(int, m.groups())
    assert read > 0 and computed > 0 and twice == 0, m.group(0)


def test_reference_device_cpu_runs_and_is_named_in_the_header():
    p = run_pytest("--grid=smoke", "--backend=reference", "--reference-device=cpu",
                   "--no-golden", "conformance/test_scaled_mm.py")
    assert p.returncode == 0, p.stdout[-3000:]
    assert "reference: float64 GEMM on torch cpu where exact" in p.stdout, p.stdout[:2000]
    assert re.search(rf"\b{len(SMOKE)} passed\b", summary(p.stdout)), summary(p.stdout)


def test_openmp_threads_wait_passively_unless_the_user_chose(monkeypatch):
    """The suite asks OpenMP runtimes loaded after it to let idle threads sleep (a CPU
    kernel's spinning threads slow the reference and the judge); a user's choice stays."""
    from conformance.plugin import passive_waits

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
