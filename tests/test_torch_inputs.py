"""``kernel.torch_inputs``: case inputs as torch tensors, in the case's layout."""

import dataclasses

import numpy as np
import pytest

from golden.cases import Case, build

torch = pytest.importorskip("torch")
ti = pytest.importorskip("kernel.torch_inputs")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt_b", ["e4m3fn", "e5m2"])
@pytest.mark.parametrize("layout", ["kn-t", "nk", "kn"])
def test_fp8_b_is_case_data_b_bit_for_bit(layout, fmt_b, device):
    """B transposed by torch on the device has CaseData.b()'s shape, strides and codes."""
    data = build(Case(M=3, N=24, K=40, fmt_b=fmt_b, layout=layout), 0)
    want = ti.fp8(data.b(), fmt_b, device)
    got = ti.fp8_b(data, device)
    assert got.dtype == want.dtype == ti.dtype(fmt_b) and got.device == want.device
    assert tuple(got.shape) == tuple(want.shape) and got.stride() == want.stride()
    assert torch.equal(got.view(torch.uint8).cpu(), want.view(torch.uint8).cpu())


def test_fp8_b_takes_a_non_contiguous_b_kn():
    """A B whose [K,N] codes are a strided view (a store read, a slice) crosses the same."""
    data = build(Case(M=3, N=24, K=40), 0)
    view = np.asfortranarray(data.b_kn)
    data = dataclasses.replace(data, b_kn=view)
    assert not data.b_kn.flags.c_contiguous
    assert torch.equal(ti.fp8_b(data, "cpu").view(torch.uint8),
                       ti.fp8(data.b(), "e4m3fn", "cpu").view(torch.uint8))

