"""Probes: hand-picked FP8 inputs whose exact results are known, run through any adapter, to
fingerprint how a kernel computes (after the published tensor-core studies, DESIGN §9).

    python -m conformance.probe --backend torch --device cuda

prints a JSON fingerprint. Every product below is exact and every sum is exact in an
accumulator of 11 or more significant bits unless the probe is about the accumulator:

``output_rounding``  nearest-even / toward-zero / nearest-away / toward-plus-inf /
                     toward-minus-inf, from bf16 outputs at and just off halfway, both signs.
``acc_bits``         fraction bits the accumulator keeps (23 = fp32), by cancellation
                     (L + s - L); ``"exact"`` when even 2**-40 of the running sum survives.
``block``            products per reduced-precision block (a small term lost next to a large
                     one survives when it starts a new block), or null.
``truncates``        whether the inner accumulator rounds toward zero (null when exact/fp32).
``subnormals``       whether subnormal e4m3 inputs and sums of their products are kept.
``fp16_overflow``    inf / saturate for an fp16 output beyond 65504 + half an ulp.
``nan_spread``       which outputs one NaN in A reaches: element / row / column / all.
``bias_*``, ``scale_*``  whether bias and scales are applied before or after the output
                     rounding (per-tensor and row-wise: different kernels on cuda).
``sum_65536``        DESIGN §10: 2**16 products of 1 then 4095 of 2**-10 (exact 65539.999).
``exact``            every probe found exact arithmetic (the reference does).

A probe the adapter cannot run (capability, or the kernel raising) reads
``"unsupported: <reason>"``; nothing here raises for an adapter's sake. Probes assume the
kernel sums along K in order (or in contiguous blocks); an interleaved order can hide losses.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from golden.cases import Case, CaseData
from golden.codecs import decode, encode, round_to_format
from kernel.base import Unsupported
from kernel.registry import backend_names, enable_xpu_emulation, get_backend
from kernel.synthetic import MODES, round_directed  # also registers the synthetic backends

__all__ = ["fingerprint", "run_values", "EXACT"]

FMT = "e4m3fn"
L = 128.0  # 128 * 128 = 2**14: the large product (fits an fp16 accumulator)
BLOCK_K = 1024  # probe_block's K: a longer block reads as "no block"
BEFORE, AFTER = "before output rounding", "after output rounding"


def run_values(adapter, device: str, a_vals, b_vals, out="fp32", bias=None, rowwise=False,
               scale_a=1.0, scale_b=1.0) -> np.ndarray:
    """Run ``sa * sb * (A @ B) + bias`` with exact e4m3fn values (NaN allowed), float32 scales
    (``rowwise``: the same value as an [M,1] / [1,N] scale) and a bf16 bias.

    Raises :class:`Unsupported` when the adapter's capability rejects the case."""
    a_vals, b_vals = np.asarray(a_vals, np.float64), np.asarray(b_vals, np.float64)
    a, b = encode(a_vals, FMT), encode(b_vals, FMT)
    if not (np.array_equal(decode(a, FMT), a_vals, equal_nan=True)
            and np.array_equal(decode(b, FMT), b_vals, equal_nan=True)):
        raise ValueError("probe inputs must be exact e4m3fn values")
    (m, k), n = a.shape, b.shape[1]
    sa, sb = ("[M,1]", "[1,N]") if rowwise else ("[]", "[]")
    case = Case(M=m, N=n, K=k, out=out, layout="kn-t", dataset="zero", sa=sa, sb=sb,
                w="channel" if rowwise else "tensor", a="token" if rowwise else "tensor",
                bias=None if bias is None else "bf16")
    why = adapter.why_not(case, device)
    if why:
        raise Unsupported(why)
    s_a = np.full((m, 1) if rowwise else (), scale_a, np.float32)
    s_b = np.full((1, n) if rowwise else (), scale_b, np.float32)
    bias = None if bias is None else np.asarray(bias, np.float64)
    blank = np.zeros((m, n))  # Y* and the bound are the judge's: adapters never read them
    data = CaseData(case, 0, a, b, s_a, s_b, bias, blank, blank, np.ones((1, 1)))
    return adapter.run(data, device).values


# --- input builders -------------------------------------------------------------------------


def _terms(v: float) -> list[float]:
    """``|v|`` as e4m3-exact powers of two (256 repeated, then its binary digits), signed."""
    rest, out = abs(v), []
    while rest >= 256:
        out.append(256.0)
        rest -= 256
    for e in range(7, -10, -1):
        if rest >= 2.0**e:
            out.append(2.0**e)
            rest -= 2.0**e
    if rest:
        raise ValueError(f"{v} is not a sum of e4m3 powers of two")
    return [math.copysign(t, v) for t in out]


def _dots(values, k=16, n=16):
    """A, B ([M,K], [K,N], B all ones where used) whose row m of ``A @ B`` is ``values[m]``."""
    rows = [_terms(v) for v in values]
    k = max(k, -(-max(map(len, rows)) // 16) * 16)
    a, b = np.zeros((len(rows), k)), np.ones((k, n))
    for i, r in enumerate(rows):
        a[i, : len(r)] = r
    return a, b


def _match(y: np.ndarray, hypotheses: dict) -> str:
    """The name of the hypothesis whose expected array ``y`` equals (NaN == NaN)."""
    for name, want in hypotheses.items():
        if np.array_equal(y, want, equal_nan=True):
            return name
    return f"unexplained ({np.unique(y).tolist()[:8]!r})"


# --- probes ---------------------------------------------------------------------------------

_HALFWAY = [257.0, 259.0, 257.5, 256.5, -257.0, -259.0, -257.5, -256.5]


def probe_output_rounding(adapter, device) -> str:
    """bf16 outputs of exact values 257, 259 (halfway: bf16 spacing is 2 on [256, 512)),
    257.5 and 256.5 (just off halfway), and their negatives.

    nearest-even gives 256, 260, 258, 256; toward-zero 256, 258, 256, 256; nearest-away
    258, 260, 258, 256; the directed modes differ from these by sign (toward-plus-inf:
    258, 260, 258, 258 and -256, -258, -256, -256).
    """
    a, b = _dots(_HALFWAY)
    y = run_values(adapter, device, a, b, out="bf16")[:, 0]
    return _match(y, {m: round_directed(_HALFWAY, "bf16", m) for m in MODES})


def _cancel_kept(adapter, device, copies: int) -> dict:
    """``copies`` products L*L = 2**14, then s = 2**(13 - r - c) at row r, column c, then
    ``copies`` products -2**14: exact result s. {d: kept}, d = log2(sum before s) - log2(s)."""
    r_exp = np.minimum(np.arange(16), 13)  # a: 2**7 .. 2**-6
    c_exp = np.minimum(np.arange(16), 12)  # b: 2**6 .. 2**-6
    k = -(-(2 * copies + 1) // 16) * 16
    a, b = np.zeros((16, k)), np.zeros((k, 16))
    a[:, :copies], b[:copies] = L, L
    a[:, copies], b[copies] = 2.0 ** (7 - r_exp), 2.0 ** (6 - c_exp)
    a[:, copies + 1: 2 * copies + 1], b[copies + 1: 2 * copies + 1] = -L, L
    y = run_values(adapter, device, a, b)
    small = np.outer(a[:, copies], b[copies])
    depth = 14 + int(math.log2(copies)) - np.log2(small).round().astype(int)
    kept = {}
    for d, ok in zip(depth.ravel(), (y == small).ravel(), strict=True):
        kept[int(d)] = kept.get(int(d), True) and bool(ok)
    return kept


def probe_acc_bits(adapter, device):
    """Fraction bits of the accumulator: L + s - L with s from 2**-1 to 2**-26 of L = 2**14
    (one large product each way); s survives iff the accumulator holds L + s, so the first
    depth d lost gives d - 1 bits (23 for fp32, 10 for fp16; round-to-nearest and truncation
    both lose s = half an ulp, the tie going to the even L). When nothing is lost, 2**14
    copies each way put the small term 2**-15 .. 2**-40 below the running sum: all kept is
    ``"exact"``."""
    kept = _cancel_kept(adapter, device, 1)
    if all(kept.values()):
        kept.update(_cancel_kept(adapter, device, 2**14))
    lost = [d for d, ok in kept.items() if not ok]
    return min(lost) - 1 if lost else "exact"


def probe_block(adapter, device, bits) -> int | None:
    """Row p: L*L = 2**14 at k=0, a small 2**(14-d) at k=p (d = bits + 3: lost within a
    block at ``bits``, kept by an fp32 outer accumulator). The first p where the small term
    survives is where a new block starts; null when it survives everywhere or nowhere."""
    if not isinstance(bits, int) or bits >= 23:
        return None
    k, d = BLOCK_K, min(bits + 3, 22)
    a, b = np.zeros((k - 1, k)), np.zeros((k, 16))
    a[:, 0], b[0], b[1:] = L, L, 1.0
    pos = np.arange(1, k)
    a[pos - 1, pos] = 2.0 ** (14 - d)
    kept = run_values(adapter, device, a, b)[:, 0] == 2.0**14 + 2.0 ** (14 - d)
    return None if kept.all() or not kept.any() else int(pos[np.argmax(kept)])


def probe_truncates(adapter, device, bits) -> bool | None:
    """2**14 + u + u/2 with u one accumulator ulp at ``bits``: truncation leaves 2**14 + u,
    rounding to nearest gives 2**14 + 2u (the tie goes to even). Null when exact or fp32."""
    if not isinstance(bits, int) or bits >= 23:
        return None
    u = 2.0 ** (14 - bits)
    a, b = np.zeros((16, 16)), np.zeros((16, 16))
    a[:, 0], b[0] = L, L
    a[:, 1:3], b[1:3] = [u, u / 2], 1.0
    y = run_values(adapter, device, a, b)[0, 0] - 2.0**14
    return {u: True, 2 * u: False}.get(y, f"unexplained ({y!r})")


def probe_subnormals(adapter, device) -> dict:
    """Row 0: 2**-9 (e4m3's smallest subnormal) times 1: 2**-9 kept, 0 flushed. Row 1: 256
    products 2**-9 * 2**-9 = 2**-18 (below e4m3's and bf16-visible only summed): 2**-10 kept,
    0 flushed. fp32 output."""
    a, b = np.zeros((16, 272)), np.zeros((272, 16))
    a[0, 0], b[0] = 2.0**-9, 1.0
    a[1, 1:257], b[1:257] = 2.0**-9, 2.0**-9
    y = run_values(adapter, device, a, b)[:2, 0]
    names = lambda want: {want: "kept", 0.0: "flushed"}  # noqa: E731
    return {"inputs": names(2.0**-9).get(y[0], f"unexplained ({y[0]!r})"),
            "products": names(2.0**-10).get(y[1], f"unexplained ({y[1]!r})")}


def probe_fp16_overflow(adapter, device) -> str:
    """fp16 output of +-256*256 = +-65536, beyond 65504 + 16 (half an ulp): inf or 65504."""
    a, b = np.zeros((16, 16)), np.zeros((16, 16))
    a[:, 0], a[1::2, 0], b[0] = 256.0, -256.0, 256.0
    y = run_values(adapter, device, a, b, out="fp16")[:2, 0]
    return _match(y, {"inf": [np.inf, -np.inf], "saturate": [65504.0, -65504.0],
                      "nan": [np.nan, np.nan]})


def probe_nan_spread(adapter, device) -> str:
    """All-ones 16x16x16 with A[3, 5] = NaN: IEEE arithmetic makes row 3 NaN."""
    a, b = np.ones((16, 16)), np.ones((16, 16))
    a[3, 5] = np.nan
    nan = np.isnan(run_values(adapter, device, a, b, out="fp32"))
    row, col, one = np.zeros_like(nan), np.zeros_like(nan), np.zeros_like(nan)
    row[3], col[:, 5], one[3, 5] = True, True, True
    masks = {"row": row, "column": col, "element": one, "all": ~one | one,
             "none": np.zeros_like(nan)}
    return next((k for k, v in masks.items() if np.array_equal(nan, v)),
                f"unexplained ({int(nan.sum())} NaN outputs)")


_ORDER_DOTS = [367.5, 257.5, 259.0, 261.5, -367.5, -257.5, -259.0, -261.5]


def _order(adapter, device, mode, bias=None, scale=1.0, rowwise=False) -> str:
    """Rows: dots of :data:`_ORDER_DOTS` (exact in 11 bits); columns: bias or scale. "before"
    rounds ``scale * dot + bias`` once; "after" rounds the dot, then applies them and rounds
    again (both in the output rounding ``mode``). Outputs where the two agree say nothing."""
    mode = mode if mode in MODES else "nearest-even"
    a, b = _dots(_ORDER_DOTS)
    y = run_values(adapter, device, a, b, out="bf16", bias=bias, rowwise=rowwise, scale_a=scale)
    d = np.array(_ORDER_DOTS)[:, None]
    c = 0.0 if bias is None else np.asarray(bias)[None, :]
    rnd = lambda x: round_directed(np.broadcast_to(x, y.shape), "bf16", mode)  # noqa: E731
    before, after = rnd(scale * d + c), rnd(scale * rnd(d) + c)
    informative = before != after
    if not informative.any():
        return "undetermined"
    return _match(y[informative], {BEFORE: before[informative], AFTER: after[informative]})


_BIAS = np.resize([-8064.0, 1.5, -1.5, 0.5, 3.0, -0.5, 8064.0, 2.5], 16)


def probe_bias_order(adapter, device, mode, rowwise=False) -> str:
    """Bias before or after the output rounding: e.g. 367.5 - 8064 = -7696.5 rounds to
    -7712 in bf16, while round(367.5) = 368, -7696 is a tie and goes to even -7680."""
    return _order(adapter, device, mode, bias=_BIAS, rowwise=rowwise)


def probe_scale_order(adapter, device, mode, rowwise=False) -> str:
    """Scale 1.5 before or after the output rounding: e.g. 1.5 * 257.5 = 386.25 rounds to
    386 in bf16, while 1.5 * round(257.5) = 387 is a tie that goes to even 388."""
    return _order(adapter, device, mode, scale=1.5, rowwise=rowwise)


def probe_sum_65536(adapter, device) -> float:
    """DESIGN §10: 2**16 products of 1 then 4095 products of 2**-10 (exact 65539.999...)."""
    k = 65536 + 4096
    a, b = np.zeros((16, k)), np.zeros((k, 16))
    a[:, :65536], b[:65536] = 1.0, 1.0
    a[:, 65536:65536 + 4095], b[65536:65536 + 4095] = 2.0**-5, 2.0**-5
    return float(run_values(adapter, device, a, b)[0, 0])


# --- fingerprint ----------------------------------------------------------------------------

SUM_65536_EXACT = 65536 + 4095 * 2.0**-10

# The value of each field that exact arithmetic with IEEE specials gives (the reference).
EXACT = {
    "output_rounding": "nearest-even", "acc_bits": "exact", "block": None, "truncates": None,
    "subnormals": {"inputs": "kept", "products": "kept"}, "fp16_overflow": "inf",
    "nan_spread": "row", "bias_per_tensor": BEFORE, "bias_rowwise": BEFORE,
    "scale_per_tensor": BEFORE, "scale_rowwise": BEFORE,
    "sum_65536": float(round_to_format(SUM_65536_EXACT, "fp32")),  # 65540.0
}


def _safe(fn, *args, **kw):
    """``fn(*args)``, or ``"unsupported: <reason>"`` when the adapter rejects or fails it."""
    try:
        return fn(*args, **kw)
    except Unsupported as exc:
        return f"unsupported: {exc}"
    except Exception as exc:  # a kernel that raises on a probe is reported, not fatal
        return f"unsupported: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _json_safe(v):
    """Non-finite floats as strings so the fingerprint is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return {k: _json_safe(x) for k, x in v.items()} if isinstance(v, dict) else v


def fingerprint(backend: str, device: str, adapter=None) -> dict:
    """The arithmetic fingerprint of ``backend`` on ``device`` as a plain (JSON-able) dict
    (``adapter``: an already configured instance of it, e.g. with XPU emulation on)."""
    ad = adapter if adapter is not None else get_backend(backend)
    bits = _safe(probe_acc_bits, ad, device)
    mode = _safe(probe_output_rounding, ad, device)
    fp = {
        "backend": backend,
        "device": device,
        "output_rounding": mode,
        "acc_bits": bits,
        "block": _safe(probe_block, ad, device, bits),
        "truncates": _safe(probe_truncates, ad, device, bits),
        "subnormals": _safe(probe_subnormals, ad, device),
        "fp16_overflow": _safe(probe_fp16_overflow, ad, device),
        "nan_spread": _safe(probe_nan_spread, ad, device),
        "bias_per_tensor": _safe(probe_bias_order, ad, device, mode),
        "bias_rowwise": _safe(probe_bias_order, ad, device, mode, rowwise=True),
        "scale_per_tensor": _safe(probe_scale_order, ad, device, mode),
        "scale_rowwise": _safe(probe_scale_order, ad, device, mode, rowwise=True),
        "sum_65536": _safe(probe_sum_65536, ad, device),
        "sum_65536_exact": SUM_65536_EXACT,
    }
    fp["exact"] = all(fp[k] == v for k, v in EXACT.items())
    return _json_safe(fp)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="reference", choices=backend_names())
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "xpu"))
    p.add_argument("--emulate-xpu", action="store_true",
                   help="probe the XPU ops' CPU contract emulation (xpu-ops, vllm:XPU*)")
    args = p.parse_args(argv)
    ad = get_backend(args.backend)
    if args.emulate_xpu:
        try:
            enable_xpu_emulation(ad, args.backend)
        except (ValueError, RuntimeError) as exc:
            p.error(str(exc))
    why = ad.why_unavailable(args.device)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    print(json.dumps(fingerprint(args.backend, args.device, adapter=ad), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
