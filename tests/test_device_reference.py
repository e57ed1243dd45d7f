"""``--reference-device`` (``conformance/device_reference.py``) and golden's blocked dot.

On every torch device this machine has (cpu always: torch's own float64 GEMM, not NumPy's
BLAS; cuda or xpu where present), a sample of default-grid W8A8 cases built with the device's
dot is bit-identical with the NumPy build: Y* and ``sum |A||B|``. The e5m2 mixes and NaN/inf
inputs never reach the device (they fall back to NumPy). Golden's own NumPy dot gives the same
bits whole and in blocks.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.device_reference import REFERENCE_DEVICES, TorchDot, make_dot
from conformance.matrix import grid
from golden import matmul
from golden.cases import GROUPED_SCHEMES, Case, build
from golden.codecs import decode_table
from kernel.torch_inputs import torch_devices

DEVICES = torch_devices()
_W8A8 = [c for c in grid("default") if c.a not in GROUPED_SCHEMES]
SAMPLE = _W8A8[::23] + [  # and larger shapes, K up to the llm grid's largest
    Case(M=33, N=96, K=28672, w="channel", a="token", sa="[M,1]", sb="[N]"),
    Case(M=257, N=1024, K=4096, w="tensor", a="tensor", sa="[]", sb="[]", out="fp16",
         bias="bf16"),
    Case(M=9, N=40, K=8192, fmt_a="e5m2", fmt_b="e5m2", w="tensor", a="tensor", sa="[]",
         sb="[]"),
]


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and np.array_equal(np.asarray(x, np.float64).view(np.uint64),
                                                 np.asarray(y, np.float64).view(np.uint64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sample", SAMPLE, ids=[c.id for c in SAMPLE])
def test_device_build_is_bit_identical_with_numpy(sample, device):
    case, dot = sample, TorchDot(device)
    want, got = build(case, 0), build(case, 0, dot=dot)
    assert _same_bits(got.expected, want.expected), f"Y* differs on {device}: {case.id}"
    assert _same_bits(got.absdot, want.absdot), f"sum|A||B| differs on {device}: {case.id}"
    exact = matmul.single_band(case.fmt_a, case.fmt_b, case.K)
    # Y* needs finite inputs and a non-empty output as well (NaN/inf rows follow IEEE on NumPy)
    y_on_device = exact and case.M and case.N and case.edge not in ("nan-a", "inf-a")
    want_calls = int(bool(y_on_device)) + int(exact)
    assert dot.calls == want_calls, (f"{case.id}: {dot.calls} GEMMs on {device}, expected "
                                     f"{want_calls} (e5m2 mixes fall back to NumPy)")


def test_the_sample_reaches_the_device_and_the_fallback():
    exact = [c for c in SAMPLE if matmul.single_band(c.fmt_a, c.fmt_b, c.K)]
    assert len(exact) >= 10 and len(SAMPLE) - len(exact) >= 3
    assert not matmul.single_band("e5m2", "e5m2", 64)
    assert matmul.single_band("e4m3fn", "e4m3fn", 1 << 17)


@pytest.mark.parametrize("m,n,k", [(70, 30, 50), (30, 70, 50), (20, 20, 70), (1, 1, 9)])
@pytest.mark.parametrize("plan", ["one", "columns", "terms"])
def test_numpy_dot_blocks_equal_one_gemm(monkeypatch, m, n, k, plan):
    """Each way of computing the GEMM, in blocks of 8 columns or terms with a ragged last one,
    gives the bits of one GEMM of the decoded operands."""
    rng = np.random.default_rng(m * 100 + n)
    a = rng.integers(0, 0x7F, (m, k), dtype=np.uint8)
    b = rng.integers(0, 0x7F, (k, n), dtype=np.uint8)
    t = decode_table("e4m3fn")
    want = t[a] @ t[b]
    monkeypatch.setattr(matmul, "_BLOCK", 8)
    monkeypatch.setattr(matmul, "dot_plan", lambda m, n, k: (plan, 0))
    got = matmul.numpy_dot(a, b, t, t)
    assert got.shape == (m, n)
    assert _same_bits(got, want)


def test_numpy_dot_plan_decodes_into_the_least_memory():
    """One GEMM for small operands and empty ones; for the llm grid's largest shapes, blocks
    of K where A and B are both large (8192 x 8192 x 28672: 1 GiB of buffers and partial
    product against 1.75 GiB for A), columns of B where B is (8192 x 57344 x 8192)."""
    assert matmul.dot_plan(64, 64, 64)[0] == "one"
    assert matmul.dot_plan(0, 1 << 20, 1 << 20)[0] == "one"
    assert matmul.dot_plan(8192, 8192, 28672) == ("terms", 16384 * 4096 + 8192**2)
    assert matmul.dot_plan(8192, 57344, 8192) == ("columns", 8192**2 + 8192 * 4096)
    assert matmul.dot_plan(8192, 57344, 2048)[0] == "columns"  # one block of K: nothing to add
    t = decode_table("e4m3fn")
    empty = matmul.numpy_dot(np.zeros((33, 0), np.uint8), np.zeros((0, 5), np.uint8), t, t)
    assert empty.shape == (33, 5) and not empty.any()


def test_make_dot_and_bad_devices():
    assert make_dot("numpy") is None and make_dot(None) is None
    assert isinstance(make_dot("cpu"), TorchDot)
    with pytest.raises(ValueError, match="'tpu' is unknown; valid: numpy, cpu, cuda, xpu"):
        make_dot("tpu")
    assert REFERENCE_DEVICES == ("numpy", "cpu", "cuda", "xpu")
    with pytest.raises(TypeError, match="uint8"):
        TorchDot("cpu")(np.zeros((2, 2), np.uint16), np.zeros((2, 2), np.uint8),
                        decode_table("e4m3fn"), decode_table("e4m3fn"))
