"""The probes recover known arithmetic: the reference is exact in every field, and each
synthetic kernel (kernel/synthetic.py) shows the parameters it declares."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernel.synthetic as synthetic  # registers the synthetic backends
from conformance import probe
from golden.codecs import decode
from kernel.base import Capability, KernelRun

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference_fp():
    return probe.fingerprint("reference", "cpu")


def test_reference_is_exact_in_every_field(reference_fp):
    fp = reference_fp
    assert fp["exact"] is True
    for key, want in probe.EXACT.items():
        assert fp[key] == want, key
    assert fp["acc_bits"] == "exact" and fp["output_rounding"] == "nearest-even"
    assert fp["subnormals"] == {"inputs": "kept", "products": "kept"}
    assert fp["fp16_overflow"] == "inf" and fp["nan_spread"] == "row"


@pytest.mark.parametrize("backend", sorted(synthetic.ARITHMETIC))
def test_synthetic_kernel_parameters_are_recovered(backend):
    fp = probe.fingerprint(backend, "cpu")
    for key, want in synthetic.ARITHMETIC[backend].items():
        assert fp[key] == want, (key, fp)
    assert fp["exact"] is False
    json.dumps(fp, allow_nan=False)


@pytest.mark.parametrize("mode, want", [
    ("nearest-even", [256, 260, 258, 256, -256, -260, -258, -256]),
    ("toward-zero", [256, 258, 256, 256, -256, -258, -256, -256]),
    ("nearest-away", [258, 260, 258, 256, -258, -260, -258, -256]),
    ("toward-plus-inf", [258, 260, 258, 258, -256, -258, -256, -256]),
    ("toward-minus-inf", [256, 258, 256, 256, -258, -260, -258, -258]),
])
def test_round_directed_on_the_halfway_probe(mode, want):
    assert synthetic.round_directed(probe._HALFWAY, "bf16", mode).tolist() == want


def test_round_directed_overflow_follows_ieee():
    x = [70000.0, -70000.0]
    assert synthetic.round_directed(x, "fp16", "nearest-even").tolist() == [np.inf, -np.inf]
    assert synthetic.round_directed(x, "fp16", "toward-zero").tolist() == [65504.0, -65504.0]


class _NoFp16(synthetic.TruncatingOutput):
    def capability(self, device):
        return Capability(levels=frozenset({"op"}), formats=frozenset({("e4m3fn", "e4m3fn")}),
                          outs=frozenset({"bf16", "fp32"}))


class _Raises(synthetic.TruncatingOutput):
    def run(self, data, device, reps=0):
        raise RuntimeError("kernel says no")


def test_unsupported_probe_is_reported_not_raised():
    got = probe._safe(probe.probe_fp16_overflow, _NoFp16(), "cpu")
    assert got.startswith("unsupported: output dtype fp16")
    got = probe._safe(probe.probe_nan_spread, _Raises(), "cpu")
    assert got == "unsupported: RuntimeError: kernel says no"


def _cli(backend: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "conformance.probe", "--backend", backend],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_cli_reference_prints_exact_json():
    fp = _cli("reference")
    assert fp["exact"] is True and fp["backend"] == "reference"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_cli_torch_cpu_runs():
    fp = _cli("torch")
    assert fp["backend"] == "torch" and "acc_bits" in fp


class _EpilogueAfterRounding(synthetic.TruncatingOutput):
    """Rounds the accumulator to the output type (nearest-even) before scales and bias."""

    output_mode = "nearest-even"

    def run(self, data, device, reps=0):
        c = data.case
        acc = synthetic.round_directed(self.accumulate(decode(data.a, c.fmt_a),
                                                       decode(data.b_kn, c.fmt_b)),
                                       c.out)
        y = acc * float(data.scale_a.reshape(-1)[0]) * float(data.scale_b.reshape(-1)[0])
        if data.bias is not None:
            y = y + decode(data.bias_bits, c.bias).reshape(1, -1)
        return KernelRun(synthetic.round_directed(y, c.out))


def test_bias_and_scale_after_rounding_are_seen():
    ad, mode = _EpilogueAfterRounding(), "nearest-even"
    assert probe.probe_bias_order(ad, "cpu", mode) == probe.AFTER
    assert probe.probe_scale_order(ad, "cpu", mode) == probe.AFTER
