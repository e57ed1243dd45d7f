"""``conformance/device_draws.py``: every draw, and whole case builds, computed on each torch
device this machine has (cpu always; cuda or xpu where present) are NumPy's bits."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.device_draws import TorchBits, draws_on
from golden.cases import Case, build
from golden.rng import Bits
from kernel.torch_inputs import torch_devices

DEVICES = torch_devices()


def _device_bits(device, monkeypatch, chunk_words=1 << 25):
    """TorchBits that send every draw to ``device`` (in chunks of ``chunk_words``)."""
    monkeypatch.setattr(TorchBits, "MIN_WORDS", 1)
    monkeypatch.setattr(TorchBits, "CHUNK_WORDS", chunk_words)
    return TorchBits("case", 3, device)


def _draws(b: Bits, n: int) -> dict[str, np.ndarray]:
    return {"uniform": b.uniform("f", (n, 3)), "signs": b.signs("s", n),
            "normal": b.normal("g", (3, n)), "choice_mask": b.choice_mask("c", n, 0.3),
            "integers": b.integers("i", n, -7, 2**32 - 9),
            "integers_small": b.integers("j", (n,), 0, 5)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk_words", [1 << 25, 7])  # one pass; chunks across elements
def test_every_draw_is_numpys(device, chunk_words, monkeypatch):
    got = _draws(_device_bits(device, monkeypatch, chunk_words), 1001)
    want = _draws(Bits("case", 3), 1001)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert np.array_equal(got[name], want[name]), f"{name} differs on {device}"
        if got[name].dtype == np.float64:  # signed zeros too
            assert np.array_equal(got[name].view(np.uint64), want[name].view(np.uint64)), name


def test_small_draws_stay_on_numpy(monkeypatch):
    calls = []
    monkeypatch.setattr(TorchBits, "_device_map", lambda *a: calls.append(a))
    b = TorchBits("case", 3, "cpu")
    b.normal("g", 1000), b.uniform("f", (10, 10)), b.uniform("f", 10**7, at=np.arange(3))
    assert calls == [], "draws under MIN_WORDS words (and draws at given elements) use NumPy"
    b.uniform("f", TorchBits.MIN_WORDS)
    assert len(calls) == 1


CASES = [Case(M=64, N=48, K=80, dataset=d, w="channel", a="token", sa="[M,1]", sb="[N]",
              bias="bf16") for d in ("gauss", "saturate", "range", "mixzero", "outlier")] + [
    Case(M=24, N=24, K=24, level="layer", w="channel", a="dyn-token", sa="[M,1]", sb="[N,1]",
         out="bf16", x="bf16", dataset="rowscale"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sample", CASES, ids=[c.id for c in CASES])
def test_a_build_with_device_draws_is_numpys(sample, device, monkeypatch):
    monkeypatch.setattr(TorchBits, "MIN_WORDS", 1)
    got, want = build(sample, 0, draws=draws_on(device)), build(sample, 0)
    for name in ("a", "b_kn", "scale_a", "scale_b", "bias", "expected", "absdot", "x"):
        g, w = getattr(got, name), getattr(want, name)
        assert (g is None) == (w is None), name
        if w is not None:
            assert np.array_equal(np.asarray(g), np.asarray(w)), f"{name} differs on {device}"
