"""``conformance/vllm_tables.py``: the kernel-selection table (needs vllm; skipped without it)
and the capability table built from a run's records (plain Python: runs everywhere)."""

from __future__ import annotations

import os

import pytest

from conformance.vllm_tables import (
    ASSUMED,
    MEASURED,
    capability_summary,
    capability_table,
    markdown_tables,
)
from golden.cases import Case

KC = "ChannelWiseTorchFP8ScaledMMLinearKernel"


# --- capability table (no vllm) ---------------------------------------------------------------

def _id(w="tensor", a="dyn-token", out="bf16", x="bf16", M=17, **kw) -> str:
    sa = {"static": "[]", "dyn-tensor": "[]", "dyn-token": "[M,1]"}[a]
    sb = {"tensor": "[]", "channel": "[N,1]"}[w]
    return Case(M=M, N=64, K=128, level="layer", w=w, a=a, out=out, x=x, sa=sa, sb=sb,
                **kw).id


def _rec(case_id, verdict, reason=None, checks=()):
    return {"case": case_id, "verdict": verdict, "reason": reason, "checks": list(checks)}


REJECT = (f"vllm:{KC}/cpu: {KC}.can_implement rejects: "
          "cannot be used with per tensor activation and weight scales.")
RULE = (f"vllm:{KC}/cpu: vLLM's FP8 loaders hand weight_scale as 0-D/[1] (per tensor) or "
        "[N,1]/[N] (per channel), never this shape")
RECORDS = [
    # w=tensor,a=dyn-token: accepted, all pass -> conforms
    _rec(_id(M=17), "pass"), _rec(_id(M=32), "pass"),
    # w=channel,a=dyn-tensor: accepted, fails (the narrow bug) -> VIOLATION
    _rec(_id("channel", "dyn-tensor", M=17), "fail", "kernel raised", ["kernel-raised"]),
    _rec(_id("channel", "dyn-tensor", M=1), "pass"),
    _rec(_id("channel", "dyn-tensor", M=32), "crashed", "worker died", ["crashed"]),
    # w=tensor,a=static: rejected by can_implement -> never wrong numbers
    _rec(_id("tensor", "static"), "skip", REJECT),
    _rec(_id("tensor", "static", M=32), "skip", REJECT),
    # w=tensor,a=dyn-tensor with fp16 out: skipped by a suite rule only -> not run
    _rec(_id("tensor", "dyn-tensor", out="fp16"), "skip", RULE),
    # w=channel,a=dyn-token: a pytest error and nothing failing -> incomplete
    _rec(_id("channel", "dyn-token"), "error", "fixture error"),
    # not a layer case / not a case: ignored
    _rec(Case(M=4, N=64, K=128).id, "skip", "level op"),
    _rec(None, "pass"),
]


def _by_scheme(rows):
    return {(r["w"], r["a"], r["out"]): r for r in rows}


def test_capability_statuses():
    rows = _by_scheme(capability_table(RECORDS, KC))
    assert len(rows) == 5
    ok = rows["tensor", "dyn-token", "bf16"]
    assert (ok["status"], ok["can_implement"], ok["cases"], ok["passed"]) == (
        "conforms", "accepts", 2, 2)
    bad = rows["channel", "dyn-tensor", "bf16"]
    assert bad["status"] == "VIOLATION: accepted but 2 cases fail"
    assert (bad["run"], bad["passed"], bad["failed"], bad["checks"]) == (
        3, 1, 2, "crashed,kernel-raised")
    rej = rows["tensor", "static", "bf16"]
    assert rej["status"] == "rejected (never wrong numbers)"
    assert rej["can_implement"] == (
        "rejects: cannot be used with per tensor activation and weight scales.")
    assert (rej["skipped"], rej["run"]) == (2, 0)
    nr = rows["tensor", "dyn-tensor", "fp16"]
    assert nr["can_implement"] == "not evaluated"
    assert nr["status"].startswith("not run (vLLM's FP8 loaders hand weight_scale")
    assert rows["channel", "dyn-token", "bf16"]["status"] == "incomplete: 1 errors"
    assert {r["format"] for r in rows.values()} == {"e4m3fn"}
    assert {r["x"] for r in rows.values()} == {"bf16"}


def test_capability_rejection_of_another_class_is_not_this_ones():
    other = REJECT.replace(KC, "PerTensorTorchFP8ScaledMMLinearKernel")
    (row,) = capability_table([_rec(_id("tensor", "static"), "skip", other)], KC)
    assert row["can_implement"] == "not evaluated" and row["status"].startswith("not run (")


def test_capability_accepts_old_failed_checks_field():
    rec = {"case": _id(), "verdict": "fail", "reason": "bound", "failed_checks": ["bound"]}
    (row,) = capability_table([rec], KC)
    assert row["checks"] == "bound" and row["status"].startswith("VIOLATION")


def test_capability_summary_counts():
    s = capability_summary(capability_table(RECORDS, KC))
    assert s == {"rows": 5, "conforms": 1, "violations": 1, "incomplete": 1, "rejected": 1,
                 "not_run": 1, "cases": 9, "cases_run": 6, "cases_failed": 2}


def test_markdown_tables_without_selection_rows():
    md = markdown_tables([], capability_table(RECORDS, KC))
    assert "## vLLM kernel selection" in md and "## vLLM kernel capability" in md
    assert "VIOLATION: accepted but 2 cases fail" in md and f"`{KC}`" in md
    # one header, one separator and five rows in the capability table
    cap = md.split("## vLLM kernel capability")[1]
    assert sum(line.startswith("|") for line in cap.splitlines()) == 7


# --- selection table (vllm) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def selection():
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    pytest.importorskip("vllm", reason="vllm not installed (tox -e vllm)")
    from conformance.vllm_tables import selection_table

    return selection_table()


def _rows(rows, platform, path):
    return {(r["weight_key"], r["act_key"]): r for r in rows
            if r["platform"] == platform and r["path"] == path}


def test_selection_lists_and_fields(selection):
    assert {r["list"] for r in selection} == {
        "_POSSIBLE_FP8_KERNELS", "_POSSIBLE_FP8_BLOCK_KERNELS", "_POSSIBLE_WFP8A16_KERNELS"}
    assert {"CPU", "XPU", "CUDA", "ROCM"} <= {r["platform"] for r in selection}
    for r in selection:
        assert r["is_supported"] == (MEASURED if r["platform"] == "CPU" else ASSUMED)
        assert isinstance(r["rejected_before"], list)
        if r["drops_how"] and r["path"] != "w8a16":
            assert r["drops_how"].startswith(("measured on CPU: ", "from source: ", "unknown"))


def test_cpu_rows_select_the_torch_kernels(selection):
    cpu = _rows(selection, "CPU", "w8a8")
    per_tensor = "PerTensorTorchFP8ScaledMMLinearKernel"
    want = {("kFp8StaticTensorSym", "kFp8StaticTensorSym"): per_tensor,
            ("kFp8StaticTensorSym", "kFp8DynamicTensorSym"): per_tensor,
            ("kFp8StaticTensorSym", "kFp8DynamicTokenSym"): KC,
            ("kFp8StaticChannelSym", "kFp8DynamicTokenSym"): KC}
    for key, cls in want.items():
        row = cpu[key]
        assert row["selected"] == cls and row["is_supported"] == MEASURED
        assert row["drops_act_quant"] is False
        assert row["drops_how"].startswith("measured on CPU: QuantFP8 calls=1")
        assert "A=float8_e4m3fn" in row["drops_how"]


def test_cpu_channel_weight_per_tensor_act_raises_in_vllm(selection):
    """vLLM 0.33's ChannelWiseTorch kernel narrows a per-tensor activation scale by M."""
    row = _rows(selection, "CPU", "w8a8")["kFp8StaticChannelSym", "kFp8DynamicTensorSym"]
    assert row["selected"] == KC and "apply_weights raised" in row["note"]
    assert row["loaders"].startswith("none")


def test_xpu_w8a8_rows_are_served_weight_only(selection):
    xpu = _rows(selection, "XPU", "w8a8")
    assert len(xpu) == 6
    for row in xpu.values():
        assert row["selected"] == "XPUW8A16FP8LinearKernel"
        assert row["is_supported"] == ASSUMED and row["rejected_before"] == []
        assert row["drops_act_quant"] is True
        assert "xpu.py:" in row["drops_how"] or "fp8_gemm_w8a16 A=bfloat16" in row["drops_how"]
        assert "next accepting class: XPUW8A8FP8LinearKernel" in row["note"]


def test_empty_and_refusing_lists(selection):
    assert all(r["selected"] is None and "empty list" in r["note"]
               for r in _rows(selection, "CPU", "w8a16").values())
    blk = _rows(selection, "XPU", "w8a16")["kFp8Static128BlockSym", "kFp8DynamicTensorSym"]
    assert blk["selected"] is None and blk["rejected_before"][0].startswith("XPUW8A16FP8")


def test_markdown_has_both_tables(selection):
    md = markdown_tables(selection, [])
    assert "assumed (off-platform)" in md and "XPUW8A16FP8LinearKernel" in md
    assert "no layer cases" in md


def test_xpu_rows_measured_through_the_emulation(selection):
    """Where ``kernel.xpu_emulation`` provides CPU ``_xpu_C`` ops, the XPU rows are measured:
    the W8A16 class hands the GEMM a bf16 activation, the block class an e4m3fn one."""
    emu = pytest.importorskip("kernel.xpu_emulation")
    if not hasattr(emu, "install"):
        pytest.skip("kernel.xpu_emulation has no install() yet")
    rows = [r for r in selection if r["platform"] == "XPU" and r["path"] != "w8a16"]
    assert len(rows) == 7
    for r in rows:
        assert r["drops_how"].startswith("measured on CPU: ") and "emulated op" in r["drops_how"]
        if r["path"] == "w8a8":
            assert "QuantFP8 calls=0, _xpu_C::fp8_gemm_w8a16 A=bfloat16" in r["drops_how"]
        else:
            assert r["drops_act_quant"] is False
            assert "QuantFP8 calls=1, _xpu_C::fp8_gemm A=float8_e4m3fn" in r["drops_how"]


def test_xpu_rows_from_source_without_the_emulation(monkeypatch):
    """Without the emulation the XPU rows fall back to a cited source line, labelled so."""
    pytest.importorskip("vllm", reason="vllm not installed (tox -e vllm)")
    from conformance import vllm_tables as vt

    monkeypatch.setattr(vt, "_xpu_emulation", lambda: (None, "no emulation (test)"))
    from vllm.model_executor.kernels.linear.scaled_mm.xpu import XPUW8A16FP8LinearKernel

    drops, how, raised = vt._drops(XPUW8A16FP8LinearKernel, "kFp8StaticTensorSym",
                                   "kFp8StaticTensorSym", "w8a8", True)
    assert drops is True and raised is None
    assert how.startswith("from source: vllm/model_executor/kernels/linear/scaled_mm/xpu.py:")
    assert how.endswith("[no emulation (test)]")
