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
import torch

from conformance.device_reference import REFERENCE_DEVICES, TorchDot, make_dot
from conformance.matrix import grid
from golden import matmul
from golden.cases import GROUPED_SCHEMES, Case, build
from golden.codecs import decode_table

DEVICES = ["cpu"] + [d for d in ("cuda", "xpu") if getattr(torch, d).is_available()]
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


@pytest.mark.parametrize("m,n", [(70, 30), (30, 70), (1, 1), (0, 5)])
def test_numpy_dot_blocks_equal_one_gemm(monkeypatch, m, n):
    """Rows of A (M >= N) or columns of B (M < N) in blocks, with a ragged last block, give
    the same bits as one GEMM of the decoded operands."""
    k = 50
    rng = np.random.default_rng(m * 100 + n)
    a = rng.integers(0, 0x7F, (m, k), dtype=np.uint8)
    b = rng.integers(0, 0x7F, (k, n), dtype=np.uint8)
    t = decode_table("e4m3fn")
    want = t[a] @ t[b]
    monkeypatch.setattr(matmul, "_BLOCK_ELEMENTS", 8 * k)  # 8 rows/columns per block
    got = np.full((m, n), np.nan)
    blocks = 0
    for (rows, cols), blk in matmul.numpy_dot(a, b, t, t):
        got[rows, cols] = blk
        blocks += 1
    assert _same_bits(got, want)
    assert blocks == (1 if min(m, n) <= 1 else -(-max(m, n) // 8))


def test_make_dot_and_bad_devices():
    assert make_dot("numpy") is None and make_dot(None) is None
    assert isinstance(make_dot("cpu"), TorchDot)
    with pytest.raises(ValueError, match="'tpu' is unknown; valid: numpy, cpu, cuda, xpu"):
        make_dot("tpu")
    assert REFERENCE_DEVICES == ("numpy", "cpu", "cuda", "xpu")
    with pytest.raises(TypeError, match="uint8"):
        list(TorchDot("cpu")(np.zeros((2, 2), np.uint16), np.zeros((2, 2), np.uint8),
                             decode_table("e4m3fn"), decode_table("e4m3fn")))
