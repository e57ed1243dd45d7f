"""``conformance/device_codecs.py``: FP8 encodes on each torch device this machine has (cpu
always; cuda or xpu where present) are ``golden.codecs.encode``'s codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformance.device_codecs import TorchCodec, encode_tensor
from golden.cases import Case, build
from golden.codecs import OVERFLOW_MODES, decode_table, encode
from golden.formats import get_format
from kernel.torch_inputs import torch_devices

DEVICES = torch_devices()
FP8 = ["e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz"]


def _edge_values(fmt_name: str) -> np.ndarray:
    """Every value of the format, each midpoint between neighbours and the float64 values next
    to both, past the largest value, around the smallest subnormal, signed zeros, inf, NaN."""
    fmt = get_format(fmt_name)
    vals = np.unique(decode_table(fmt_name)[np.isfinite(decode_table(fmt_name))])
    mids = (vals[:-1] + vals[1:]) / 2  # exact: neighbours differ by one quantum
    big = np.array([fmt.max * (1 + 2.0**-fmt.man_bits / 2), fmt.max * 2, 1e300, np.inf])
    tiny_q = 2.0 ** (fmt.emin - fmt.man_bits)
    tiny = np.array([tiny_q / 2, tiny_q / 4, 3 * tiny_q / 2, 5e-324, 2.0**-1074 * 3])
    x = np.concatenate([vals, mids, big, tiny, [0.0, np.nan]])
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
    return np.concatenate([x, -x])


def _random_bits(n: int, seed: int) -> np.ndarray:
    """float64 values from random bits: every exponent, subnormals, inf and NaNs included."""
    return np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64).view(np.float64)


def _scaled_normals(n: int, fmt_name: str, seed: int) -> np.ndarray:
    """Values like the data sets' (Gaussians around the format's range, and past it)."""
    fmt = get_format(fmt_name)
    return np.random.default_rng(seed).standard_normal(n) * 2.0 ** (fmt.emax - 1)


def _same_codes(got, want, what: str) -> None:
    assert got.dtype == want.dtype == np.uint8, what
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{what}: {bad.size} codes differ, first at {bad[:5]}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
@pytest.mark.parametrize("fmt", FP8)
def test_encode_tensor_is_goldens_on_edge_and_random_values(fmt, overflow, device):
    for what, x in (("edge values", _edge_values(fmt)), ("random bits", _random_bits(1 << 16, 1)),
                    ("scaled normals", _scaled_normals(1 << 16, fmt, 2))):
        got = encode_tensor(torch.from_numpy(x).to(device), fmt, overflow).cpu().numpy()
        _same_codes(got, encode(x, fmt, overflow), f"{fmt} {overflow} {what} on {device}")


@pytest.mark.parametrize("device", DEVICES)
def test_codec_encodes_large_arrays_on_the_device_small_ones_on_numpy(device, monkeypatch):
    calls = []
    real = encode_tensor

    def counted(*args, **kw):
        calls.append(args[0].device.type)
        return real(*args, **kw)

    monkeypatch.setattr("conformance.device_codecs.encode_tensor", counted)
    codec = TorchCodec(device)
    x = _scaled_normals(TorchCodec.MIN_VALUES, "e4m3fn", 3).reshape(1024, -1)
    got = codec.encode(x, "e4m3fn", "saturate")
    assert calls == [device] and got.shape == x.shape
    _same_codes(got, encode(x, "e4m3fn", "saturate"), f"a {x.shape} array on {device}")
    codec.encode(x[:10], "e4m3fn"), codec.encode(x, "bf16")  # small; not 8-bit
    assert calls == [device]


def test_encode_tensor_names_bad_arguments():
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="8-bit formats, not bf16"):
        encode_tensor(x, "bf16")
    with pytest.raises(ValueError, match="overflow='clamp' is not one of"):
        encode_tensor(x, "e4m3fn", "clamp")
    with pytest.raises(TypeError, match="float64 values, got torch.float32"):
        encode_tensor(x.float(), "e4m3fn")


@pytest.mark.parametrize("device", DEVICES)
def test_a_build_with_the_device_codec_is_numpys(device, monkeypatch):
    monkeypatch.setattr(TorchCodec, "MIN_VALUES", 1)
    case = Case(M=64, N=48, K=80, dataset="saturate", w="channel", a="token", sa="[M,1]",
                sb="[N]", fmt_b="e5m2")
    got, want = build(case, 0, codec=TorchCodec(device)), build(case, 0)
    for name in ("a", "b_kn", "expected", "absdot"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
