"""The suite catches the vLLM XPU path's historical bugs: each test breaks vLLM's real class on
purpose (a copy of its ``process_weights_after_loading`` with one line changed, patched in
with ``monkeypatch`` and restored after the test), runs ``vllm`` grid cases through the
suite's own machinery (``VllmLinearAdapter.run`` over the ``--emulate-xpu`` op emulation, then
``judge``), and checks that exactly the cases the break concerns fail, and how."""

from __future__ import annotations

import inspect
import sys
import textwrap

import pytest

from conformance.checks import judge
from conformance.matrix import grid
from golden.cases import build
from kernel.base import Unsupported

pytest.importorskip("vllm", reason="vllm not installed (tox -e vllm)")

W8A8, W8A16 = "XPUW8A8FP8LinearKernel", "XPUW8A16FP8LinearKernel"
# The one line each break changes in vLLM 0.33's process_weights_after_loading.
BREAKS = {
    "square-no-transpose": {
        W8A8: ("needs_transpose = w.shape == (N, K) if K != N else w.is_contiguous()",
               "needs_transpose = w.shape == (N, K) if K != N else False"),
        W8A16: ("in_features != out_features or weight.is_contiguous()",
                "in_features != out_features"),
    },
    "scale-untransposed": {
        W8A16: ("weight_scale = layer.weight_scale.t().contiguous()",
                "weight_scale = layer.weight_scale"),
    },
}
# Which cases each class serves (the rest it refuses or never gets from vLLM's selection).
SERVES = {W8A8: lambda c: c.a not in ("none", "group"), W8A16: lambda c: c.a == "none"}
# The [N,1] scale reaching fp8_gemm_w8a16 takes the block route (#440); what the emulation
# says, by whether K/size(0) divides the scale's dims (the real op checks only the first).
N1_ERRORS = {False: "does not divide [K, N]",  # K % N != 0: the real op's TORCH_CHECK fails
             True: "silently misread"}  # K % N == 0, K == N too: no check on XPU, wrong reads


def _adapter(cls_name: str):
    from kernel.vllm_linear import VllmLinearAdapter

    adapter = VllmLinearAdapter(cls_name)
    adapter.set_emulation(True)
    return adapter


def _break(monkeypatch, cls_name: str, brk: str) -> None:
    """Replace ``cls_name.process_weights_after_loading`` by a copy of vLLM's source with the
    one line of ``BREAKS[brk]`` changed (the test fails here if vLLM's line moved on)."""
    from kernel.vllm_linear import load_kernel_class

    cls = load_kernel_class(cls_name)
    old, new = BREAKS[brk][cls_name]
    src = textwrap.dedent(inspect.getsource(cls.process_weights_after_loading))
    assert src.count(old) == 1, f"vLLM's {cls_name}.process_weights_after_loading changed: {old!r}"
    scope = dict(vars(sys.modules[cls.__module__]))
    exec(compile(src.replace(old, new), f"<{brk} {cls_name}>", "exec"), scope)
    monkeypatch.setattr(cls, "process_weights_after_loading", scope["process_weights_after_loading"])


def _outcomes(adapter, cases) -> dict:
    """case -> failed checks ([] = pass; "kernel-raised: ..." for an exception), as the
    suite's test_scaled_mm decides; cases the adapter refuses are left out."""
    out = {}
    for c in cases:
        if adapter.why_not(c, "cpu"):
            continue
        data = build(c, 0)
        try:
            run = adapter.run(data, "cpu")
        except Unsupported:
            continue
        except Exception as exc:
            out[c] = [f"kernel-raised: {type(exc).__name__}: {exc}"]
            continue
        out[c] = judge(data, run.values, adapter.profile("cpu")).checks
    return out


def _grid(cls_name: str, keep=lambda c: True) -> list:
    return [c for c in grid("vllm") if SERVES[cls_name](c) and keep(c)]


def _failed(outcomes: dict) -> dict:
    return {c: checks for c, checks in outcomes.items() if checks}


@pytest.mark.parametrize("cls_name", [W8A8, W8A16])
def test_square_weight_without_transpose_fails_only_nk_at_k_eq_n(cls_name, monkeypatch):
    """Unpatched, the class passes all its vllm-grid cases (square ones in kn-t and nk);
    with the transpose skipped at K == N, exactly the nk cases at K == N fail, on the
    judge's bound check, and every non-square case still passes."""
    cases = _grid(cls_name)
    adapter = _adapter(cls_name)
    before = _outcomes(adapter, cases)
    square = {(c.layout, c.K == c.N) for c in before}
    assert {("kn-t", True), ("nk", True), ("nk", False)} <= square, square
    assert not _failed(before), _failed(before)
    _break(monkeypatch, cls_name, "square-no-transpose")
    after = _outcomes(adapter, cases)
    assert after.keys() == before.keys()
    failed = _failed(after)
    assert set(failed) == {c for c in after if c.K == c.N and c.layout == "nk"}, failed
    assert all(checks == ["bound"] for checks in failed.values()), failed


def test_n1_scale_untransposed_fails_the_n1_cases_only(monkeypatch):
    """Unpatched, the weight-only class passes every per-channel case; with the [N,1]
    weight scale handed to fp8_gemm_w8a16 as is (no .t().contiguous()), every [N,1] case
    fails (the op takes the block route, vllm-xpu-kernels #440: the emulation raises
    XpuContractError naming B_scale, with the real op's check when K % N != 0 and the
    silent misread otherwise, K == N included), and every [N] case still passes."""
    cases = _grid(W8A16, lambda c: c.w == "channel")
    adapter = _adapter(W8A16)
    before = _outcomes(adapter, cases)
    assert not _failed(before), _failed(before)
    _break(monkeypatch, W8A16, "scale-untransposed")
    after = _outcomes(adapter, cases)
    failed = _failed(after)
    assert set(failed) == {c for c in after if c.sb == "[N,1]"}, failed
    kinds = {(c.K % c.N == 0, c.K == c.N) for c in failed}
    assert {(False, False), (True, True)} <= kinds, kinds  # both K % N != 0 and K == N met
    for c, (check,) in failed.items():
        assert check.startswith("kernel-raised: XpuContractError: _xpu_C.fp8_gemm_w8a16: "
                                "B_scale: "), (c.id, check)
        assert N1_ERRORS[c.K % c.N == 0] in check, (c.id, check)


def test_weight_only_class_on_w8a8_layer_never_quantizes_activations():
    """vLLM's XPU selection can hand a W8A8 layer to the weight-only class: its activations
    reach fp8_gemm_w8a16 unquantized, the judge fails the case, and the run's note says so."""
    adapter = _adapter(W8A16)
    picks = {}
    for c in grid("vllm"):  # one W8A8 case per activation scheme
        if c.a in ("static", "dyn-tensor", "dyn-token") and c.layout == "kn-t":
            picks.setdefault(c.a, c)
    for c in picks.values():
        data = build(c, 0)
        run = adapter.run(data, "cpu")
        verdict = judge(data, run.values, adapter.profile("cpu"))
        assert not verdict.passed and "bound" in verdict.checks, (c.id, verdict.checks)
        assert "activations were never quantized" in run.note, (c.id, run.note)
