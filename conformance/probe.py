"""Probes: hand-picked FP8 inputs whose exact results are known, run through any adapter, to
measure how a kernel accumulates (after the published tensor-core studies, DESIGN §9).

    python -m conformance.probe --backend torch --device cuda

prints a JSON fingerprint:

``acc_bits``   largest d such that one product 2**-d times the leading product, placed right
               after it, still reaches the fp32 output exactly (23 = fp32 accumulation).
``block``      smallest distance p at which a small product that is lost next to a large one
               survives (a new reduced-precision block started), or null.
``sum_65536``  the DESIGN §10 probe: 2**16 products of 1 then 4095 of 2**-10 (exact 65539.999).
``truncates``  True when a small product of 1.5 accumulator ulps comes out as 1 ulp.
``bias_*``     whether the bias is added before or after the output rounding (bf16 output),
               with per-tensor and with row-wise scales (different kernels on cuda).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from golden.cases import Case, CaseData
from golden.codecs import decode, encode
from golden.matmul import abs_dot, scaled_mm_exact
from kernel.registry import backend_names, get_backend

__all__ = ["fingerprint", "run_values"]

FMT = "e4m3fn"


def run_values(adapter, device: str, a_vals: np.ndarray, b_vals: np.ndarray, out="fp32",
               bias=None, rowwise=False) -> np.ndarray:
    """Run ``A @ B`` (values exactly representable in e4m3fn, scales 1, fp32 out by default)."""
    a = encode(a_vals, FMT)
    b = encode(b_vals, FMT)
    if not (np.array_equal(decode(a, FMT), a_vals) and np.array_equal(decode(b, FMT), b_vals)):
        raise ValueError("probe inputs must be exact e4m3fn values")
    m, k = a.shape
    n = b.shape[1]
    sa, sb = ("[M,1]", "[1,N]") if rowwise else ("[]", "[]")
    case = Case(M=m, N=n, K=k, out=out, layout="kn-t", dataset="zero", sa=sa, sb=sb,
                w="channel" if rowwise else "tensor", a="token" if rowwise else "tensor",
                bias=None if bias is None else "bf16")
    one = np.ones((), np.float32)
    scale_a = np.ones((m, 1), np.float32) if rowwise else one
    scale_b = np.ones((1, n), np.float32) if rowwise else one
    exp = scaled_mm_exact(a, FMT, b, FMT, one, one, bias, out)
    data = CaseData(case, 0, a, b, scale_a, scale_b, bias, exp, abs_dot(a_vals, b_vals),
                    np.ones((1, 1)))
    return adapter.run(data, device).values


def _bias_order(adapter, device, rowwise: bool) -> str:
    """Where the bias goes: dot = 367.90625 (exact in any accumulator of 14+ bits), bias -8064.

    Exact -7696.09375 rounds to bf16 -7712. Rounding the product to bf16 first (368) and
    adding the bias after gives the tie -7696, which rounds to even: -7680.
    """
    parts = [256, 64, 32, 8, 4, 2, 1, 0.5, 0.25, 0.125, 0.03125]
    m, n, k = 16, 16, 16
    a = np.zeros((m, k))
    b = np.zeros((k, n))
    a[:, : len(parts)] = parts
    b[: len(parts), :] = 1.0
    bias = np.full(n, -8064.0)
    y = float(run_values(adapter, device, a, b, out="bf16", bias=bias, rowwise=rowwise)[0, 0])
    return {-7712.0: "before output rounding", -7680.0: "after output rounding"}.get(
        y, f"unexplained ({y!r})")


def _acc_bits(adapter, device) -> int:
    """Leading product 2**16 at k=0; row r, column c adds 2**-(r+c) at k=1 (16 + r + c bits)."""
    m, n, k = 16, 16, 32
    a = np.zeros((m, k))
    b = np.zeros((k, n))
    a[:, 0] = 256.0
    b[0, :] = 256.0
    a[:, 1] = 2.0 ** -np.minimum(np.arange(m), 9)
    b[1, :] = 2.0 ** -np.minimum(np.arange(n), 9)
    y = run_values(adapter, device, a, b)
    small = np.outer(a[:, 1], b[1, :])
    kept = y - 65536.0 == small
    best = 0
    for r in range(m):
        for c in range(n):
            d = 16 + int(round(-np.log2(small[r, c])))
            if kept[r, c] and d <= 23:
                best = max(best, d)
    # smallest d lost defines the precision when kept is monotone
    lost = [16 + int(round(-np.log2(small[r, c]))) for r in range(m) for c in range(n)
            if not kept[r, c]]
    return min(min(lost) - 1, 23) if lost else 23


def _block(adapter, device, bits: int) -> int | None:
    """Row p has the leading product at k=0 and a small one at k=p (lost within a block)."""
    k = 1024
    d = min(bits + 3, 22)  # below the in-block precision, above fp32's
    a = np.zeros((k - 1, k))
    b = np.zeros((k, 16))
    a[:, 0] = 256.0
    b[0, :] = 256.0
    b[1:, :] = 1.0
    pos = np.arange(1, k)
    a[pos - 1, pos] = 2.0 ** (16 - d)  # product 2**(16-d): d bits below the leading 2**16
    y = run_values(adapter, device, a, b)[:, 0]
    kept = y == 65536.0 + 2.0 ** (16 - d)
    if kept.all() or not kept.any():
        return None
    return int(pos[np.argmax(kept)])


def _truncates(adapter, device, bits: int) -> bool | None:
    """Leading 2**16 plus 1.5 accumulator ulps (2**(16-bits) * 1.5): 1 ulp means truncation."""
    if bits >= 23:
        return None
    m, n, k = 16, 16, 32
    a = np.zeros((m, k))
    b = np.zeros((k, n))
    a[:, 0] = 256.0
    b[0, :] = 256.0
    u = 2.0 ** (16 - bits)
    a[:, 1] = u
    a[:, 2] = u / 2
    b[1:3, :] = 1.0
    y = run_values(adapter, device, a, b)[0, 0]
    return bool(y - 65536.0 < 1.5 * u)


def _sum_65536(adapter, device) -> float:
    """DESIGN §10: 2**16 products of 1 then 4095 products of 2**-10 (exact 65539.999...)."""
    k = 65536 + 4096
    a = np.zeros((16, k))
    b = np.zeros((k, 16))
    a[:, :65536] = 1.0
    a[:, 65536:65536 + 4095] = 2.0**-5
    b[:65536 + 4095, :] = 1.0
    b[65536:65536 + 4095, :] = 2.0**-5
    return float(run_values(adapter, device, a, b)[0, 0])


def fingerprint(backend: str, device: str) -> dict:
    """The accumulation fingerprint of ``backend`` on ``device`` as a plain dict."""
    adapter = get_backend(backend)
    bits = _acc_bits(adapter, device)
    return {
        "backend": backend,
        "device": device,
        "acc_bits": bits,
        "block": _block(adapter, device, bits) if bits < 23 else None,
        "truncates": _truncates(adapter, device, bits),
        "sum_65536": _sum_65536(adapter, device),
        "bias_per_tensor": _bias_order(adapter, device, rowwise=False),
        "bias_rowwise": _bias_order(adapter, device, rowwise=True),
        "sum_65536_exact": 65536 + 4095 * 2.0**-10,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="reference", choices=backend_names())
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "xpu"))
    args = p.parse_args(argv)
    why = get_backend(args.backend).why_unavailable(args.device)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    print(json.dumps(fingerprint(args.backend, args.device), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
