"""Case inputs as torch tensors, exactly in the case's layout and shapes (nothing transposed or
reshaped), for the adapters that call torch ops (``torch._scaled_mm``, ``_xpu_C``, IPEX)."""

from __future__ import annotations

import numpy as np

from golden.cases import CaseData

from .base import Unsupported

__all__ = ["require_torch", "torch_devices", "dtype", "fp8", "fp8_b", "f32", "bias", "values"]

_DTYPE = {"e4m3fn": "float8_e4m3fn", "e5m2": "float8_e5m2", "e4m3fnuz": "float8_e4m3fnuz",
          "e5m2fnuz": "float8_e5m2fnuz", "bf16": "bfloat16", "fp16": "float16",
          "fp32": "float32"}


def require_torch():
    """The torch module; no torch is a skip that says how to get it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise Unsupported(f"torch is not importable: {exc}; pip install torch") from None
    return torch


def torch_devices() -> list[str]:
    """The torch devices this machine has, the adapters' preference first: xpu and cuda where
    torch sees one, then cpu (always)."""
    torch = require_torch()
    found = [d for d in ("xpu", "cuda") if getattr(torch, d, None) is not None
             and getattr(torch, d).is_available()]
    return found + ["cpu"]


def dtype(name: str):
    """The torch dtype of a suite format name (``e4m3fn``, ``bf16``, ...)."""
    return getattr(require_torch(), _DTYPE[name])


def fp8(codes: np.ndarray, fmt: str, device: str):
    """FP8 codes as a tensor of ``fmt``, keeping the NumPy strides (the case's layout)."""
    torch = require_torch()
    return torch.from_numpy(np.asarray(codes)).view(dtype(fmt)).to(device)


def fp8_b(data: CaseData, device: str):
    """B in the case's layout (``CaseData.b``: [N,K] C-contiguous, its [K,N] transposed view,
    or [K,N] C-contiguous) as a tensor of its FP8 format on ``device``. B crosses as the [K,N]
    codes and torch transposes it there. For a 4096 x 6144 weight, NumPy's strided byte copy
    (``CaseData.b``) took 0.14-0.19 s; torch's on this CPU 0.045 s, and crossing to the H100
    and transposing there 5 ms."""
    torch = require_torch()
    layout = data.case.layout  # one of golden.cases.LAYOUTS (Case checks it)
    codes = torch.from_numpy(np.ascontiguousarray(data.b_kn)).to(device)
    if layout != "kn":
        codes = codes.t().contiguous()  # [N,K] C-contiguous
        codes = codes if layout == "nk" else codes.t()
    return codes.view(dtype(data.case.fmt_b))


def f32(x: np.ndarray, device: str):
    """A fresh contiguous float32 tensor in ``x``'s shape: NumPy gives an empty [0,1] array
    strides (0, 0), which torch's and the XPU op's contiguity checks reject."""
    torch = require_torch()
    return torch.empty(x.shape, dtype=torch.float32).copy_(torch.from_numpy(x)).to(device)


def bias(data: CaseData, device: str):
    """The case's bias in its own dtype (from its raw bits), or None."""
    if data.bias is None:
        return None
    torch = require_torch()
    bits = data.bias_bits
    raw = torch.from_numpy(bits.view(np.int16) if bits.dtype == np.uint16 else bits.view(np.int32))
    return raw.view(dtype(data.case.bias)).to(device)


def values(y) -> np.ndarray:
    """A kernel's output tensor as float64 NumPy values (exact: bf16, fp16 and fp32 widen
    without rounding). It crosses to the host in its own dtype and torch widens it into the
    array: on an H100 at 8192 x 6144 bf16, 0.07-0.10 s against 0.20-0.28 s through
    ``y.float().cpu().numpy().astype(np.float64)`` (two fresh host copies)."""
    torch = require_torch()
    out = np.empty(tuple(y.shape), np.float64)
    torch.from_numpy(out).copy_(y.detach().cpu())
    return out


def xpu_module_missing(module: str, install_hint: str = "") -> str | None:
    """Why ``module`` cannot run on an Intel XPU here (None when it can): torch missing, the
    module not importable (``install_hint`` appended), or no XPU device."""
    import importlib

    try:
        torch = require_torch()
    except Unsupported as exc:
        return str(exc)
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken build raising anything else
        return (f"{module} is not importable ({type(exc).__name__}: {exc})"
                + (f"; {install_hint}" if install_hint else ""))
    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return f"{module} imports but torch sees no XPU device (torch.xpu.is_available() is False)"
    return None
