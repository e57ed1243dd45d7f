"""The tolerance rules other projects judge FP8 GEMMs by, to compare the suite's power with.

Each rule replaces the suite's judge with its own element-wise test, against the reference
its project uses (:data:`ANCHOR_RULES`). The references are computed without error (the
exact value rounded once to fp32 or to the output type), which can only help the rule: its
own test would add its reference's fp32 accumulation error to the comparison.

As every rule's own test does, a rule fails an output of the wrong shape or with a NaN where
the reference has none (and the reverse). NaN matches NaN (``equal_nan``): the suite's edge
cases put NaN into inputs, which the anchors' tests never do. Where Y* overflows, an output
of the same sign at or past the format's maximum matches. Elsewhere an infinite output fails
the allclose rules (``assert_close`` requires equal infinities); TOSA compares it as the
overflow threshold, as the suite does, since its bound may reach past the format's range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from golden.bounds import extended, tosa_fp8_bound
from golden.cases import CaseData
from golden.codecs import round_to_format
from golden.formats import get_format

from .checks import unrounded

__all__ = ["AnchorRule", "ANCHOR_RULES", "anchor_failures", "anchor_references"]

# torch.testing.assert_close's default (rtol, atol) by dtype
_ASSERT_CLOSE = {"bf16": (1.6e-2, 1e-5), "fp16": (1e-3, 1e-5), "fp32": (1.3e-6, 1e-5)}


@dataclass(frozen=True)
class AnchorRule:
    """One project's test: ``allowed(data, exact)`` is the largest |Y - ref| per element,
    ``reference`` names what Y is compared with (``fp32``: the exact value rounded to fp32;
    ``out``: Y*, the exact value rounded to the output type; ``exact``: unrounded)."""

    name: str
    tolerance: str
    reference: str
    source: str
    allowed: Callable[[CaseData, np.ndarray], np.ndarray]
    inf_as_threshold: bool = False  # an infinite output counts as the overflow threshold


def _allclose(rtol: float, atol: float):
    return lambda data, ref: atol + rtol * np.abs(ref)


def _assert_close_defaults(data: CaseData, ref: np.ndarray) -> np.ndarray:
    return _allclose(*_ASSERT_CLOSE[data.case.out])(data, ref)


def _tosa(data: CaseData, ref: np.ndarray) -> np.ndarray:
    bias = 0.0 if data.bias is None else np.abs(data.bias).reshape(1, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        size = data.mag() * data.absdot + bias
    return tosa_fp8_bound(size, data.case.K, data.bias is not None, data.case.out)


ANCHOR_RULES = (
    AnchorRule("assert_close", "torch.testing.assert_close defaults (bf16 rtol 1.6e-2, fp16 "
               "1e-3, fp32 1.3e-6; atol 1e-5)", "out", "torch.testing", _assert_close_defaults),
    AnchorRule("vllm-cutlass", "rtol 0.5, atol 0.15", "fp32",
               "vLLM tests/kernels/quantization/test_cutlass_scaled_mm.py", _allclose(0.5, 0.15)),
    AnchorRule("vllm-xpu-kernels", "atol = rtol = 6e-2", "out",
               "vllm-xpu-kernels fp8_gemm tests", _allclose(6e-2, 6e-2)),
    AnchorRule("pytorch-scaled-mm", "atol = rtol = 7e-2", "out",
               "PyTorch test/test_scaled_matmul_cuda.py", _allclose(7e-2, 7e-2)),
    AnchorRule("transformer-engine", "e4m3: rtol 0.125, atol 0.0675", "fp32",
               "TransformerEngine tests (dtype_tols for float8_e4m3)", _allclose(0.125, 0.0675)),
    AnchorRule("tosa-fp8", "2 max(ksb, min(ksb, 64) 2^10) units of size 2^-(1+frac_out)",
               "exact", "TOSA dot-product compliance, FP8 relaxation (DESIGN §4)", _tosa,
               inf_as_threshold=True),
)


def anchor_references(data: CaseData) -> dict[str, np.ndarray]:
    """The references the rules compare with (W8A8 cases), by :attr:`AnchorRule.reference`."""
    exact = unrounded(data)
    return {"exact": exact, "out": data.expected,
            "fp32": round_to_format(np.where(np.isfinite(exact), exact, 0.0), "fp32")}


def anchor_failures(data: CaseData, got: np.ndarray, refs: dict | None = None,
                    rules=ANCHOR_RULES) -> dict[str, bool]:
    """For each rule's name: True when the rule fails ``got`` on this case (W8A8 cases).
    ``refs``: :func:`anchor_references` of ``data``, when the caller judges several outputs."""
    exp = data.expected
    got = np.asarray(got, np.float64)
    if got.shape != exp.shape:
        return {r.name: True for r in rules}
    if exp.size == 0:
        return {r.name: False for r in rules}
    nan_e, nan_g = np.isnan(exp), np.isnan(got)
    out = get_format(data.case.out)
    over = np.isinf(exp)
    # overflow: the same sign at or past the maximum matches; NaN matches NaN only
    special_ok = np.where(over, (np.sign(got) == np.sign(exp)) & (np.abs(got) >= out.max),
                          nan_e & nan_g)
    special_bad = ((nan_e | over | nan_g) & ~special_ok).any()
    finite = ~(nan_e | over | nan_g)
    refs = anchor_references(data) if refs is None else refs
    got_x = extended(got, out)
    result = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for rule in rules:
            ref = refs[rule.reference]
            allowed = np.broadcast_to(rule.allowed(data, ref), exp.shape)
            y = got_x if rule.inf_as_threshold else got
            bad = finite & ~(np.abs(y - ref) <= allowed)
            result[rule.name] = bool(special_bad or bad.any())
    return result
