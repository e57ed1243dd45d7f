"""The XPU backends ``xpu-ops`` (``kernel/xpu_ops.py``) and ``ipex`` (``kernel/ipex_ops.py``):
their skip reasons on a machine without them, their capability tables against the op
contracts, and ``xpu-ops`` through the CPU contract emulation (``kernel/xpu_emulation.py``,
skipped until that module exists)."""

from __future__ import annotations

import importlib.util

import pytest

from conformance.checks import judge
from golden.cases import Case, build
from kernel.base import Unsupported
from kernel.ipex_ops import IpexFp8GemmAdapter
from kernel.registry import BACKENDS
from kernel.xpu_ops import XpuOpsAdapter


def op_case(**kw) -> Case:
    base = dict(M=5, N=24, K=40, level="op", w="tensor", a="tensor", out="bf16", layout="kn-t",
                sa="[]", sb="[]", dataset="gauss")
    base.update(kw)
    return Case(**base)


def _xpu_available() -> bool:
    import torch

    return hasattr(torch, "xpu") and torch.xpu.is_available()


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_both_backends_register_under_their_names():
    assert BACKENDS["xpu-ops"] is XpuOpsAdapter and BACKENDS["ipex"] is IpexFp8GemmAdapter


# -- unavailable here ----------------------------------------------------------------------


@pytest.mark.skipif(_xpu_available() or _importable("vllm_xpu_kernels"),
                    reason="this machine has an XPU or vllm_xpu_kernels")
def test_xpu_ops_without_the_op_has_no_device_and_says_why():
    adapter = XpuOpsAdapter()
    assert adapter.devices() == [] and not adapter.emulated
    why = adapter.why_unavailable("xpu")
    assert "vllm_xpu_kernels._xpu_C is not importable" in why, why
    assert "--emulate-xpu" in why, why  # and how to get a run anyway
    assert adapter.why_unavailable("cpu") == why
    with pytest.raises(Unsupported, match="vllm_xpu_kernels"):
        adapter.run(build(op_case()), "xpu")


@pytest.mark.skipif(_xpu_available() or _importable("intel_extension_for_pytorch"),
                    reason="this machine has an XPU or IPEX")
def test_ipex_without_ipex_has_no_device_and_says_why():
    adapter = IpexFp8GemmAdapter()
    assert adapter.devices() == [] and not adapter.emulated
    why = adapter.why_unavailable("xpu")
    assert "intel_extension_for_pytorch is not importable" in why, why
    assert "no CPU emulation" in why, why
    with pytest.raises(Unsupported, match="intel_extension_for_pytorch"):
        adapter.run(build(op_case()), "xpu")


def test_emulate_switches_device_and_label_without_running_anything():
    adapter = XpuOpsAdapter()
    adapter.emulate = True
    assert adapter.devices() == ["cpu"] and adapter.emulated
    assert "emulation" in adapter.description and adapter.describe("cpu")["emulated"] is True
    assert adapter.why_unavailable("cpu") is None
    assert "CPU contract emulation on 'cpu' only" in adapter.why_unavailable("xpu")
    adapter.emulate = False
    assert not adapter.emulated and "emulation" not in adapter.description


# -- capability tables ---------------------------------------------------------------------

XPU_OPS_REJECTS = [
    (op_case(out="fp32"), "output dtype fp32"),
    (op_case(layout="nk"), "weight layout 'nk'"),
    (op_case(fmt_a="e4m3fn", fmt_b="e5m2"), "format pair e4m3fn x e5m2"),
    (op_case(fmt_a="e5m2", fmt_b="e4m3fn"), "format pair e5m2 x e4m3fn"),
    (op_case(fmt_a="e4m3fnuz", fmt_b="e4m3fnuz"), "format pair e4m3fnuz"),
    (Case(M=5, N=24, K=40, level="layer", a="dyn-tensor"), "level 'layer'"),
]
XPU_OPS_ACCEPTS = [
    op_case(), op_case(layout="kn"), op_case(fmt_a="e5m2", fmt_b="e5m2", out="fp16"),
    op_case(a="token", sa="[M,1]", w="channel", sb="[N]"),
    op_case(a="token", sa="[M,1]", w="channel", sb="[N,1]", layout="kn"),
    op_case(w="channel", sb="[1,N]", sa="[1]", bias="fp32"),
    op_case(bias="fp16", out="bf16"), op_case(M=0, bias="bf16"),
]


@pytest.mark.parametrize("c,reason", XPU_OPS_REJECTS, ids=[r for _, r in XPU_OPS_REJECTS])
def test_xpu_ops_capability_rejects_what_the_contract_forbids(c, reason):
    for device in ("xpu", "cpu"):
        why = XpuOpsAdapter().capability(device).why_not(c)
        assert why is not None and reason in why, (c.id, why)


@pytest.mark.parametrize("c", XPU_OPS_ACCEPTS, ids=str)
def test_xpu_ops_capability_accepts_what_the_contract_allows(c):
    assert XpuOpsAdapter().capability("xpu").why_not(c) is None


IPEX_REJECTS = [
    (op_case(a="token", sa="[M,1]"), "scale shapes sa=[M,1]"),
    (op_case(w="channel", sb="[N]"), "scale shapes"),
    (op_case(w="tensor", sb="[1,N]"), "scale shapes"),  # numel N: read as its first value
    (op_case(fmt_a="e4m3fn", fmt_b="e5m2"), "format pair"),
    (op_case(bias="fp32", out="bf16"), "bias fp32 with output bf16"),
    (op_case(M=0), "M == 0"),
    (Case(M=5, N=24, K=40, level="layer", a="dyn-tensor"), "level 'layer'"),
]
IPEX_ACCEPTS = [
    op_case(layout="nk"), op_case(layout="kn-t", out="fp32", bias="fp32"),
    op_case(layout="kn", fmt_a="e5m2", fmt_b="e5m2", out="fp16", bias="fp16", sa="[1]", sb="[1]"),
]


@pytest.mark.parametrize("c,reason", IPEX_REJECTS, ids=[r for _, r in IPEX_REJECTS])
def test_ipex_capability_rejects_what_the_source_does_not_show(c, reason):
    why = IpexFp8GemmAdapter().capability("xpu").why_not(c)
    assert why is not None and reason in why, (c.id, why)


@pytest.mark.parametrize("c", IPEX_ACCEPTS, ids=str)
def test_ipex_capability_accepts_what_the_source_shows(c):
    assert IpexFp8GemmAdapter().capability("xpu").why_not(c) is None


def test_ipex_trans_b_follows_the_layout():
    from kernel.ipex_ops import _TRANS_B

    assert _TRANS_B == {"nk": True, "kn-t": False, "kn": False}


# -- xpu-ops through the CPU contract emulation --------------------------------------------

EMULATED = [
    op_case(),
    op_case(layout="kn", out="fp16", bias="fp32"),
    op_case(fmt_a="e5m2", fmt_b="e5m2", bias="bf16", dataset="outlier"),
    op_case(a="token", sa="[M,1]", w="channel", sb="[N]", M=17, N=48, K=64),
    op_case(a="token", sa="[M,1]", w="channel", sb="[N,1]", layout="kn", bias="fp16", out="fp16"),
    op_case(w="channel", sb="[1,N]", sa="[1]", M=1),
    op_case(M=24, N=24, K=24, layout="kn"),  # K == N: a transposed B would not be caught by shape
    op_case(edge="nan-a"),
    op_case(M=0, a="token", sa="[M,1]", bias="bf16"),
]


@pytest.fixture(scope="module")
def emulated_adapter():
    emulation = pytest.importorskip("kernel.xpu_emulation",
                                    reason="kernel/xpu_emulation.py not written yet")
    if not hasattr(emulation, "install"):
        pytest.skip("kernel/xpu_emulation.py has no install() yet")
    emulation.install()  # idempotent; the adapter also installs it on its first run
    adapter = XpuOpsAdapter(emulate=True)
    assert adapter.devices() == ["cpu"] and adapter.emulated
    return adapter


@pytest.mark.parametrize("c", EMULATED, ids=str)
def test_xpu_ops_emulated_runs_op_cases_and_passes(emulated_adapter, c):
    data = build(c, 0)
    run = emulated_adapter.run(data, "cpu", reps=1)
    assert run.values.shape == (c.M, c.N) and run.seconds is not None and "emulated" in run.note
    verdict = judge(data, run.values, emulated_adapter.profile("cpu"))
    assert verdict.passed, verdict.message(c.id, "-")


def test_xpu_ops_hands_inputs_over_in_the_case_layout_and_shapes():
    import torch

    c = op_case(a="token", sa="[M,1]", w="channel", sb="[N,1]", bias="fp16", out="fp16")
    a, b, out, sa, sb, bias = XpuOpsAdapter().inputs(build(c, 0), "cpu")
    assert a.dtype == torch.float8_e4m3fn and tuple(a.shape) == (5, 40)
    assert tuple(b.shape) == (40, 24) and b.stride() == (1, 40)  # kn-t: [K,N] column-major
    assert out == torch.float16 and bias.dtype == torch.float16 and tuple(bias.shape) == (24,)
    assert tuple(sa.shape) == (5, 1) and tuple(sb.shape) == (24, 1)
    assert sa.dtype == sb.dtype == torch.float32 and sa.is_contiguous() and sb.is_contiguous()
    _, b, *_ = XpuOpsAdapter().inputs(build(op_case(layout="kn"), 0), "cpu")
    assert b.stride() == (24, 1)
    *_, sa, sb, _ = XpuOpsAdapter().inputs(build(op_case(M=0, a="token", sa="[M,1]"), 0), "cpu")
    assert tuple(sa.shape) == (0, 1) and sa.is_contiguous() and sb.dim() == 0
