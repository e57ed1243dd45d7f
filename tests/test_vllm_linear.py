"""The ``vllm:<Class>`` backend (``kernel/vllm_linear.py``): layers built as vLLM's loaders build
them, refusals as skips, and the vLLM 0.33 bug it found. Runs where vllm imports (the tox
``vllm`` environment); skipped elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.checks import judge
from golden.cases import Case, build
from kernel.base import Unsupported
from kernel.registry import get_backend

pytest.importorskip("vllm", reason="vllm not installed (tox -e vllm)")

PER_TENSOR = "vllm:PerTensorTorchFP8ScaledMMLinearKernel"
CHANNEL = "vllm:ChannelWiseTorchFP8ScaledMMLinearKernel"


def layer_case(**kw) -> Case:
    base = dict(M=17, N=64, K=128, level="layer", w="tensor", a="dyn-tensor", out="bf16",
                layout="kn-t", sa="[]", sb="[]", x="bf16", dataset="gauss")
    base.update(kw)
    return Case(**base)


def test_unknown_class_is_an_error_naming_it():
    with pytest.raises(ValueError, match="NoSuchKernel"):
        get_backend("vllm:NoSuchKernel")
    with pytest.raises(ValueError, match="class name"):
        get_backend("vllm:not a name")


@pytest.mark.parametrize("layout,shape,strides", [
    ("kn-t", (128, 64), (1, 128)), ("kn", (128, 64), (64, 1)), ("nk", (64, 128), (128, 1))])
def test_layer_weight_keeps_the_case_layout(layout, shape, strides):
    from kernel.vllm_linear import VllmLinearAdapter

    data = build(layer_case(layout=layout), 0)
    layer = VllmLinearAdapter.layer(data)
    assert tuple(layer.weight.shape) == shape and layer.weight.stride() == strides, (
        layout, tuple(layer.weight.shape), layer.weight.stride())
    assert layer.weight_scale.shape == ()  # sb "[]": fp8.py's 0-D scale


@pytest.mark.parametrize("lcase", [  # not "case": the root conftest parametrizes that name
    layer_case(), layer_case(a="static", bias="bf16"), layer_case(M=7, layout="kn", sb="[1]"),
    layer_case(M=24, N=24, K=24, a="static")], ids=str)
def test_per_tensor_kernel_passes_its_bound(lcase):
    adapter = get_backend(PER_TENSOR)
    data = build(lcase, 0)
    verdict = judge(data, adapter.run(data, "cpu").values, adapter.profile("cpu"))
    assert verdict.passed, verdict.message(lcase.id, "-")


def test_can_implement_refusal_is_a_skip_with_vllms_reason():
    adapter = get_backend(PER_TENSOR)
    data = build(layer_case(w="channel", a="dyn-token", sa="[M,1]", sb="[N,1]"), 0)
    with pytest.raises(Unsupported, match="can_implement rejects"):
        adapter.run(data, "cpu")


def test_channelwise_per_token_passes_with_both_channel_scale_shapes():
    adapter = get_backend(CHANNEL)
    for sb in ("[N,1]", "[N]"):
        case = layer_case(w="channel", a="dyn-token", sa="[M,1]", sb=sb, M=5)
        data = build(case, 0)
        verdict = judge(data, adapter.run(data, "cpu").values, adapter.profile("cpu"))
        assert verdict.passed, verdict.message(case.id, "-")


def test_vllm_033_channelwise_crashes_on_per_tensor_activations():
    """vLLM 0.33: ChannelWiseTorch's can_implement accepts a per-tensor activation scale with
    per-channel weights (CPU selection picks it), then torch.narrow on the [1] / 0-D scale
    fails for M > 1. If this starts passing, vLLM fixed it: update the README's finding."""
    adapter = get_backend(CHANNEL)
    data = build(layer_case(w="channel", a="dyn-tensor", sb="[N,1]"), 0)
    with pytest.raises(RuntimeError, match="exceeds dimension size"):
        adapter.run(data, "cpu")
    assert np.isfinite(data.expected).all()
