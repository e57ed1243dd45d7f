"""``--reference-device``: the exact reference's GEMM in float64 on a torch device.

``golden.matmul`` hands its GEMM to a *dot* only where the float64 GEMM is exact in any
summation order: one exponent band per operand covers K (e4m3 x e4m3 up to K = 2**17, DESIGN
§4) and no input is NaN or inf. Elsewhere (the e5m2 mixes, non-finite inputs, the grouped
weight-only and block references) it keeps its NumPy path. Exact means the device's bits are
NumPy's: ``tests/test_device_reference.py`` checks it on sampled cases, on every device this
machine has.

On an accelerator the case inputs' large draws and FP8 encodes go there too
(``conformance/device_draws.py``, ``conformance/device_codecs.py``): the same bits as well
(``tests/test_device_draws.py``, ``tests/test_device_codecs.py``).

    pytest conformance --reference-device=cuda   # Y*, sum|A||B|, draws and encodes on the GPU
"""

from __future__ import annotations

import time

import numpy as np

from kernel.torch_inputs import torch_devices

from .device_codecs import TorchCodec
from .device_draws import TorchBits, draws_on

__all__ = ["REFERENCE_DEVICES", "TorchDot", "make_dot"]

REFERENCE_DEVICES = ("numpy", "cpu", "cuda", "xpu")


class TorchDot:
    """A ``golden.matmul`` dot on ``device``: codes and value tables go to the device, are
    decoded there, multiplied in float64, and the product comes back as a NumPy array.
    ``calls`` and ``seconds`` count its use (transfers included). ``draws`` and ``codec`` are
    ``golden.cases.build``'s draws factory and codec for the same accelerator (None on the
    CPU)."""

    def __init__(self, device: str):
        import torch

        if device not in ("cpu", "cuda", "xpu"):
            raise ValueError(f"reference device {device!r} is not a torch device; valid: "
                             f"{', '.join(REFERENCE_DEVICES)}")
        if device not in torch_devices():
            raise ValueError(f"reference device {device!r}: torch {torch.__version__} sees no "
                             f"{device} device here; use --reference-device=numpy (the default)")
        self.torch, self.device = torch, device
        self.calls, self.seconds = 0, 0.0
        # the case inputs' large draws and encodes on the same accelerator (torch's int64
        # passes on the CPU are slower than NumPy's uint64 ones: there they stay on NumPy)
        self.draws = None if device == "cpu" else draws_on(device)
        self.codec = None if device == "cpu" else TorchCodec(device)

    def _values(self, codes: np.ndarray, table: np.ndarray):
        t = self.torch
        if codes.dtype != np.uint8:
            raise TypeError(f"the device dot takes FP8 codes as uint8, got {codes.dtype}")
        c = t.from_numpy(np.ascontiguousarray(codes)).to(self.device)
        return t.from_numpy(np.array(table, np.float64)).to(self.device)[c.long()]  # a copy: writable

    def __call__(self, a_codes, b_codes, table_a, table_b) -> np.ndarray:
        t0 = time.perf_counter()
        s = (self._values(a_codes, table_a) @ self._values(b_codes, table_b)).cpu().numpy()
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return s

    def describe(self) -> str:
        return (f"float64 GEMM on torch {self.device} where exact (one band per operand: e4m3 "
                "pairs), NumPy elsewhere" + ("" if self.draws is None else
                f"; input draws of {TorchBits.MIN_WORDS} words or more and FP8 encodes of "
                f"{TorchCodec.MIN_VALUES} values or more on torch {self.device}"))


def make_dot(name: str | None):
    """The dot for ``--reference-device=name``: None (golden's NumPy dot) for ``numpy``."""
    if name in (None, "numpy"):
        return None
    if name not in REFERENCE_DEVICES:
        raise ValueError(f"--reference-device={name!r} is unknown; valid: "
                         f"{', '.join(REFERENCE_DEVICES)}")
    return TorchDot(name)
