"""A conformance case: its parameters, its stable id, and its inputs and reference output.

A case id reads like
``op|w=channel,a=token|e4m3|bf16|bias=bf16|M17xN4096xK4096|b=kn-t|sa=[M,1],sb=[1,N]|set=outlier``
and parses back (:meth:`Case.from_id`), so any failure can be rerun from its id alone.
Inputs are generated from ``(case id, seed)`` through :class:`golden.rng.Bits`: the same bytes
on any NumPy version, worker or order.

Levels:
``op``     the kernel gets FP8 codes and float32 scales; ``a`` is the activation scale
           granularity (``tensor`` or ``token``), ``w`` the weight's (``tensor`` or ``channel``).
           Data-set values are the FP8 values themselves (saturating encode), scales are drawn.
``layer``  bf16/fp16 activations ``x`` and a float weight are quantized by vLLM's native
           convention (``a`` = ``static``, ``dyn-tensor`` or ``dyn-token``; ``w`` per-tensor or
           per-channel), then the op runs. The unquantized float64 product is kept for SQNR.
           Two layer schemes of their own (vLLM's other FP8 linear paths):
           ``a=none``   weight-only W8A16: ``x`` (bf16/fp16, never quantized) times the
                        dequantized FP8 weight, output in x's dtype; ``a`` is None.
           ``w=block,a=group``  block FP8: 1 x 128 dynamic activation groups (scale_a [M,G])
                        and 128 x 128 weight blocks (scale_b [Nb,Kb], the checkpoint's
                        ``weight_scale_inv`` orientation).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np
from threadpoolctl import ThreadpoolController

from . import quant
from .codecs import decode, encode, round_to_format
from .datasets import DATASETS, get_dataset, make_activations, make_weights
from .formats import FP8_FORMATS, OUT_FORMATS, get_format
from .matmul import abs_dot, abs_dot_codes, grouped_mm_exact, scaled_mm_exact
from .rng import Bits

__all__ = ["Case", "CaseData", "CaseError", "build", "LEVELS", "LAYOUTS", "EDGES", "GROUPED_SCHEMES", "BLOCK"]


class CaseError(ValueError):
    """A case that cannot exist (bad parameter combination or unparsable id)."""


LEVELS = ("op", "layer")
W_SCHEMES = ("tensor", "channel", "block")
A_SCHEMES = {"op": ("tensor", "token"),
             "layer": ("static", "dyn-tensor", "dyn-token", "none", "group")}
BLOCK = 128  # vLLM's FP8 block: 1 x 128 activation groups, 128 x 128 weight blocks
# Activation schemes of the weight-only and block layer cases: built by the grouped reference
# (``_build_grouped``), opt-in for adapters (``kernel.base.Capability.schemes``).
GROUPED_SCHEMES = ("none", "group")
LAYOUTS = {
    "nk": "[N,K] row-major weight as stored in checkpoints, handed over as is",
    "kn-t": "[K,N] column-major view (the transpose of the [N,K] weight, as vLLM hands it)",
    "kn": "[K,N] row-major contiguous",
}
SA_SHAPES = ("[]", "[1]", "[M,1]", "[M,G]")
SB_SHAPES = ("[]", "[1]", "[N]", "[1,N]", "[N,1]", "[Nb,Kb]")
_SB_FOR_W = {"tensor": ("[]", "[1]", "[1,N]"), "channel": ("[N]", "[1,N]", "[N,1]"),
             "block": ("[Nb,Kb]",)}
_SA_FOR_A = {"tensor": SA_SHAPES[:3], "static": SA_SHAPES[:3], "dyn-tensor": SA_SHAPES[:3],
             "token": ("[M,1]",), "dyn-token": ("[M,1]",), "none": ("[]",),
             "group": ("[M,G]",)}
BIASES = (None, "bf16", "fp16", "fp32")
EDGES = {
    "": "no edge condition",
    "nan-a": "one NaN in A (op) / x (layer): its row must come out NaN",
    "inf-a": "one +-inf in A (e5m2 op) / x (layer): its row must be inf or NaN",
    "zeros": "A all zero: the output is exactly the bias (or 0)",
    "overflow": "scales chosen so that outputs pass the output type's max (fp16: inf)",
}
_SHORT = {"e4m3fn": "e4m3", "e5m2": "e5m2", "e4m3fnuz": "e4m3fnuz", "e5m2fnuz": "e5m2fnuz"}
_LONG = {v: k for k, v in _SHORT.items()}


@dataclass(frozen=True)
class Case:
    """One point of the case matrix (DESIGN §5). Frozen, hashable, printable as its id."""

    M: int
    N: int
    K: int
    level: str = "op"
    w: str = "tensor"
    a: str = "tensor"
    fmt_a: str = "e4m3fn"
    fmt_b: str = "e4m3fn"
    out: str = "bf16"
    bias: str | None = None
    layout: str = "kn-t"
    sa: str = "[]"
    sb: str = "[]"
    dataset: str = "gauss"
    x: str = "bf16"
    edge: str = ""

    def __post_init__(self):
        _validate(self)

    # -- id ------------------------------------------------------------------------------------
    @cached_property
    def id(self) -> str:
        fmt = _SHORT[self.fmt_a] if self.fmt_a == self.fmt_b else (
            f"{_SHORT[self.fmt_a]}x{_SHORT[self.fmt_b]}")
        parts = [
            self.level,
            f"w={self.w},a={self.a}",
            fmt,
            self.out,
            f"bias={self.bias or 'none'}",
            f"M{self.M}xN{self.N}xK{self.K}",
            f"b={self.layout}",
            f"sa={self.sa},sb={self.sb}",
            f"set={self.dataset}",
        ]
        if self.level == "layer":
            parts.append(f"x={self.x}")
        if self.edge:
            parts.append(f"edge={self.edge}")
        return "|".join(parts)

    def __str__(self) -> str:
        return self.id

    @classmethod
    def from_id(cls, case_id: str) -> Case:
        """Parse an id written by :attr:`id`; a malformed id raises :class:`CaseError`."""
        parts = case_id.strip().split("|")
        if len(parts) < 9:
            raise CaseError(f"case id {case_id!r} has {len(parts)} '|' fields, expected 9+")
        kw: dict = {"level": parts[0]}
        try:
            m = re.fullmatch(r"w=([\w-]+),a=([\w-]+)", parts[1])
            kw["w"], kw["a"] = m.group(1), m.group(2)
            fa, _, fb = parts[2].partition("x")
            kw["fmt_a"], kw["fmt_b"] = _LONG[fa], _LONG[fb or fa]
            kw["out"] = parts[3]
            b = parts[4].removeprefix("bias=")
            kw["bias"] = None if b == "none" else b
            m = re.fullmatch(r"M(\d+)xN(\d+)xK(\d+)", parts[5])
            kw["M"], kw["N"], kw["K"] = (int(g) for g in m.groups())
            kw["layout"] = parts[6].removeprefix("b=")
            m = re.fullmatch(r"sa=(\[[^\]]*\]),sb=(\[[^\]]*\])", parts[7])
            kw["sa"], kw["sb"] = m.group(1), m.group(2)
            kw["dataset"] = parts[8].removeprefix("set=")
            for extra in parts[9:]:
                key, _, val = extra.partition("=")
                if key not in ("x", "edge"):
                    raise CaseError(f"unknown field {extra!r}")
                kw[key] = val
        except (AttributeError, KeyError) as exc:
            raise CaseError(f"cannot parse case id {case_id!r}: bad field near {exc}") from None
        return cls(**kw)

    def replace(self, **kw) -> Case:
        return replace(self, **kw)

    @property
    def flops(self) -> int:
        return 2 * self.M * self.N * self.K


def _validate(c: Case) -> None:
    """Reject impossible parameter combinations with a message naming the field and choices."""

    def need(name, value, choices):
        if value not in choices:
            raise CaseError(f"{name}={value!r} is not one of {list(choices)}")

    need("level", c.level, LEVELS)
    need("w", c.w, W_SCHEMES)
    need("a", c.a, A_SCHEMES[c.level])
    need("fmt_a", c.fmt_a, FP8_FORMATS)
    need("fmt_b", c.fmt_b, FP8_FORMATS)
    need("out", c.out, OUT_FORMATS)
    need("bias", c.bias, BIASES)
    need("layout", c.layout, LAYOUTS)
    need("sa", c.sa, _SA_FOR_A[c.a])
    need("sb", c.sb, _SB_FOR_W[c.w])
    need("dataset", c.dataset, DATASETS)
    need("x", c.x, ("bf16", "fp16"))
    if c.level == "op" and c.x != "bf16":
        raise CaseError(f"x={c.x!r} applies to layer cases only (op cases take FP8 inputs)")
    need("edge", c.edge, EDGES)
    for dim in ("M", "N", "K"):
        v = getattr(c, dim)
        if not isinstance(v, int) or v < 0:
            raise CaseError(f"{dim}={v!r} must be a non-negative int")
    if c.N == 0 or c.K == 0:
        raise CaseError(f"N and K must be positive (got N={c.N}, K={c.K}); M may be 0")
    if c.edge == "inf-a" and c.level == "op" and not get_format(c.fmt_a).has_inf:
        raise CaseError(f"edge=inf-a at op level needs an A format with inf, not {c.fmt_a}")
    if (c.w == "block") != (c.a == "group"):
        raise CaseError(f"w={c.w!r}, a={c.a!r}: block weights (w=block) go with 1x{BLOCK} "
                        "activation groups (a=group) and only with them (vLLM's block FP8)")
    if c.a == "none" and c.out != c.x:
        raise CaseError(f"a='none' (weight-only) outputs in the activation dtype: out={c.out!r} "
                        f"must equal x={c.x!r}")
    if c.a in GROUPED_SCHEMES and (c.fmt_a != c.fmt_b or c.edge):
        raise CaseError(f"a={c.a!r} cases take one FP8 format (fmt_a == fmt_b) and no edge "
                        f"condition (got {c.fmt_a}/{c.fmt_b}, edge={c.edge!r})")


# --- inputs -----------------------------------------------------------------------------------


@dataclass
class CaseData:
    """Everything a kernel and the judge need for one case; NumPy only.

    ``a`` [M, K] and ``b_kn`` [K, N] hold FP8 codes (B logical); :meth:`b` gives B in the
    case's layout. ``scale_a``/``scale_b`` are float32 in the case's shapes; ``bias_bits`` the
    bias's raw bits (uint16 for bf16/fp16, uint32 for fp32). ``expected`` is Y*, ``absdot``
    is ``sum_k |A||B|`` and :meth:`mag` is ``|sa sb|``; both feed the error bound.
    Layer cases also carry ``x`` (float64 values of the activations), ``w_nk`` codes,
    ``weight_scale``, ``input_scale`` (static) and ``unquantized`` (float64 x @ W^T + bias).
    Weight-only (``a=none``) cases have ``a`` None; they and block cases fold their scales
    into ``absdot`` (``scale_mag`` is 1), since those scales vary along K or are absent;
    W8A8 cases leave ``scale_mag`` None and :meth:`mag` multiplies their scales.
    ``extra["reference_s"]``: seconds :func:`build` spent on Y* and ``absdot`` (W8A8 cases).
    """

    case: Case
    seed: int
    a: np.ndarray
    b_kn: np.ndarray
    scale_a: np.ndarray
    scale_b: np.ndarray
    bias: np.ndarray | None
    expected: np.ndarray
    absdot: np.ndarray
    scale_mag: np.ndarray | None
    x: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    input_scale: np.ndarray | None = None
    unquantized: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def b(self) -> np.ndarray:
        """B in the case's layout: [N,K] C-contiguous, its [K,N] transposed view, or [K,N] C."""
        nk = np.ascontiguousarray(self.b_kn.T)
        if self.case.layout == "nk":
            return nk
        if self.case.layout == "kn-t":
            return nk.T
        return np.ascontiguousarray(self.b_kn)

    def mag(self, rows: slice = slice(None)) -> np.ndarray:
        """``|sa sb|`` over output rows ``rows``, an array that broadcasts to [rows, N]:
        ``scale_mag`` (its rows, where it has one per output row) where the case holds it,
        else the float64 product of ``scale_a`` (1 or M values) and ``scale_b`` (1 or N),
        made per call: the judge asks a row block at a time, and a large case's [M, N] copy
        cost fresh memory."""
        if self.scale_mag is not None:
            mag = np.asarray(self.scale_mag)
            return mag if mag.ndim < 2 or mag.shape[0] == 1 else mag[rows]
        sa = self.scale_a.astype(np.float64).reshape(-1, 1)
        sb = self.scale_b.astype(np.float64).reshape(1, -1)
        return np.abs((sa if sa.shape[0] == 1 else sa[rows]) * sb)

    @property
    def bias_bits(self) -> np.ndarray | None:
        if self.bias is None:
            return None
        return encode(self.bias, self.case.bias)

    @property
    def w_nk(self) -> np.ndarray:
        return np.ascontiguousarray(self.b_kn.T)


def scale_shape(spec: str, M: int, N: int, K: int = BLOCK) -> tuple:
    """The array shape a scale-shape spec (``[]``, ``[1]``, ``[M,1]``, ...) names."""
    g, nb = -(-K // BLOCK), -(-N // BLOCK)
    return {"[]": (), "[1]": (1,), "[M,1]": (M, 1), "[N]": (N,), "[1,N]": (1, N),
            "[N,1]": (N, 1), "[M,G]": (M, g), "[Nb,Kb]": (nb, g)}[spec]


def _shape_scale(values: np.ndarray, spec: str, M: int, N: int) -> np.ndarray:
    """float32 scale array in the case's shape; ``values`` holds 1 or M/N entries."""
    v = np.asarray(values, np.float32).reshape(-1)
    target = scale_shape(spec, M, N)
    size = int(np.prod(target, dtype=np.int64))
    if v.size == 1 and size != 1:
        v = np.repeat(v, size)  # a per-tensor scale handed over expanded, as callers do
    return np.array(v.reshape(target), order="C")  # a copy; keeps a 0-d [] scale 0-d


def _draw_scales(bits: Bits, stream: str, n: int) -> np.ndarray:
    """Positive float32 scales 2**e * (1 + f), e in [-6, 1], f in [0, 1)."""
    e = bits.integers(stream + ".e", (n,), -6, 2)
    f = bits.uniform(stream + ".f", (n,))
    return np.ldexp(1.0 + f, e).astype(np.float32)


# A small case's GEMMs (at most 256**3 multiply-adds) run on one BLAS thread: no slower alone,
# and 1.5x faster beside a CPU kernel whose threads still spin (torch's after _scaled_mm) or
# another xdist worker; larger cases keep every BLAS thread.
SMALL_GEMM = 1 << 24
_BLAS = ThreadpoolController()


def build(case: Case, seed: int = 0, with_bound: bool = True, dot=None,
          draws=None, codec=None) -> CaseData:
    """Generate the case's inputs from (id, seed) and compute the reference output.

    ``with_bound=False`` skips ``sum |A||B|`` (a second GEMM), for callers that only need
    Y*, such as the golden store's output hashes; ``absdot`` is then None. ``dot`` computes
    the W8A8 GEMMs where they are exact in any order (``golden.matmul.numpy_dot`` by default;
    the suite's ``--reference-device`` passes one that runs on an accelerator): same bits.
    ``draws(key, seed)`` makes the case's :class:`~golden.rng.Bits` (default ``Bits``; the
    suite's ``--reference-device`` passes one whose large draws run there): same bits.
    ``codec.encode(x, fmt, overflow)`` encodes op cases' A and B (default
    ``golden.codecs.encode``; ``--reference-device`` passes one that runs there): same codes.
    """
    if case.M * case.N * case.K > SMALL_GEMM:
        return _build(case, seed, with_bound, dot, draws, codec)
    with _BLAS.limit(limits=1, user_api="blas"):
        return _build(case, seed, with_bound, dot, draws, codec)


def _build(case: Case, seed: int, with_bound: bool, dot, draws, codec) -> CaseData:
    bits = (draws or Bits)(case.id, seed)
    if case.a in GROUPED_SCHEMES:
        return _build_grouped(case, seed, bits, with_bound)
    if case.level == "op":
        a, b_kn, sa, sb, x, ws, xs, unq = _op_inputs(case, bits, codec.encode if codec else encode)
    else:
        a, b_kn, sa, sb, x, ws, xs, unq = _layer_inputs(case, bits)
    bias = None
    if case.bias is not None:
        mag = _typical_output(a, case.fmt_a, b_kn, case.fmt_b, sa, sb)
        bias = round_to_format(bits.normal("bias", (case.N,)) * mag, case.bias)
    if case.edge == "overflow":
        big = np.float32(get_format(case.out).max)
        sa = np.full_like(sa, big)
    scale_a = _shape_scale(sa, case.sa, case.M, case.N)
    scale_b = _shape_scale(sb, case.sb, case.M, case.N)
    t0 = time.perf_counter()
    expected = scaled_mm_exact(a, case.fmt_a, b_kn, case.fmt_b, sa, sb, bias, case.out, dot)
    absdot = abs_dot_codes(a, case.fmt_a, b_kn, case.fmt_b, dot) if with_bound else None
    reference_s = time.perf_counter() - t0
    if unq is not None and bias is not None:
        unq = unq + bias
    return CaseData(case, seed, a, b_kn, scale_a, scale_b, bias, expected, absdot, None,
                    x=x, weight_scale=ws, input_scale=xs, unquantized=unq,
                    extra={"reference_s": reference_s})


def _typical_output(a, fa, b, fb, sa, sb) -> float:
    """A magnitude like the outputs' (for drawing a bias that matters but does not dominate).
    ``fa``/``fb`` None: ``a``/``b`` are values already."""
    av = a if fa is None else decode(a, fa)
    bv = b if fb is None else decode(b, fb)
    av, bv, sa, sb = (v if np.isfinite(v).all() else v[np.isfinite(v)]  # no copy if finite
                      for v in (av, bv, sa, sb))
    if not (av.size and bv.size and sa.size and sb.size):
        return 1.0
    ra = float(np.sqrt(np.mean(av * av)))
    rb = float(np.sqrt(np.mean(bv * bv)))
    mag = ra * rb * np.sqrt(a.shape[1]) * float(np.median(sa)) * float(np.median(sb))
    return mag if np.isfinite(mag) and mag > 0 else 1.0


def _op_inputs(case: Case, bits: Bits, encode_values=encode):
    M, N, K = case.M, case.N, case.K
    a_vals, b_vals = get_dataset(case.dataset).make(bits, M, N, K, case.fmt_a, case.fmt_b)
    if case.edge == "zeros":
        a_vals = np.zeros_like(a_vals)
    a = encode_values(a_vals, case.fmt_a, "saturate")
    b = encode_values(b_vals, case.fmt_b, "saturate")
    if case.edge in ("nan-a", "inf-a") and M > 0:
        i = int(bits.integers("edge.i", (1,), 0, M)[0])
        k = int(bits.integers("edge.k", (1,), 0, K)[0])
        fa = get_format(case.fmt_a)
        a[i, k] = fa.nan_code if case.edge == "nan-a" else encode(np.inf, fa)
    sa = _draw_scales(bits, "sa", M if case.a == "token" else 1)
    sb = _draw_scales(bits, "sb", N if case.w == "channel" else 1)
    return a, b, sa, sb, None, None, None, None


def _layer_inputs(case: Case, bits: Bits):
    M, N, K = case.M, case.N, case.K
    x = round_to_format(make_activations(bits, M, K, case.dataset, case.fmt_a), case.x)
    if case.edge == "zeros":
        x = np.zeros_like(x)
    if case.edge in ("nan-a", "inf-a") and M > 0:
        i = int(bits.integers("edge.i", (1,), 0, M)[0])
        k = int(bits.integers("edge.k", (1,), 0, K)[0])
        x[i, k] = np.nan if case.edge == "nan-a" else np.inf
    w = round_to_format(make_weights(bits, N, K, case.dataset, case.fmt_b), "bf16")
    if case.w == "channel":
        w_codes, ws = quant.quantize_weight_per_channel(w, case.fmt_b)
    else:
        w_codes, ws = quant.quantize_weight_per_tensor(w, case.fmt_b)
    xs = None
    if case.a == "static":
        finite = np.abs(x[np.isfinite(x)]) if x.size else np.zeros(0)
        amax = float(finite.max()) if finite.size else 1.0
        step = float(2.0 ** int(bits.integers("static.e", (1,), -1, 2)[0]))
        xs = np.array([max(amax, 1e-3) / quant.fp8_max(case.fmt_a) * step], np.float32)
        a = quant.quantize_static(x, xs, case.fmt_a)
        sa = xs
    elif case.a == "dyn-tensor":
        a, sa = quant.quantize_dynamic_per_tensor(x, case.fmt_a)
    else:
        a, sa = quant.quantize_dynamic_per_token(x, case.fmt_a)
    with np.errstate(invalid="ignore", over="ignore"):
        unq = x @ w.T
    return (np.asarray(a), np.ascontiguousarray(w_codes.T), np.asarray(sa, np.float32),
            np.asarray(ws, np.float32), x, ws, xs, unq)


def _build_grouped(case: Case, seed: int, bits: Bits, with_bound: bool) -> CaseData:
    """Weight-only (``a=none``) and block-FP8 (``w=block,a=group``) layer cases, through the
    one grouped reference (``golden.matmul.grouped_mm_exact``)."""
    M, N, K = case.M, case.N, case.K
    fmt = case.fmt_b
    # Weight-only activations are never quantized, so their scale is free: 2**-6 keeps fp16
    # outputs of these FP8-range data sets inside fp16's range, as a real layer's are.
    x_scale = 2.0**-6 if case.a == "none" else 1.0
    x = round_to_format(make_activations(bits, M, K, case.dataset, fmt) * x_scale, case.x)
    w = round_to_format(make_weights(bits, N, K, case.dataset, fmt), "bf16")
    if case.a == "none":
        codes, ws = (quant.quantize_weight_per_channel(w, fmt) if case.w == "channel"
                     else quant.quantize_weight_per_tensor(w, fmt))
        a, a_vals, a_fmt, gk = None, x, case.x, K
        sa = np.ones((1, 1), np.float32)
        sb_kn = np.asarray(ws, np.float32).reshape(1, -1)  # [1,1] or [1,N]
        scale_a = np.array(1.0, np.float32)  # "[]": no activation scale
    else:
        a, sa = quant.quantize_group(x, fmt, BLOCK)
        codes, ws = quant.quantize_block(w, fmt, (BLOCK, BLOCK))
        a_vals, a_fmt, gk = decode(a, fmt), fmt, BLOCK
        sb_kn = np.repeat(ws.T, BLOCK, axis=1)[:, :N]  # [G, N]: each column's block scale
        scale_a = np.array(sa, np.float32, order="C")
    b_kn = np.ascontiguousarray(codes.T)
    b_vals = decode(b_kn, fmt)
    bias = None
    if case.bias is not None:
        mag = _typical_output(a_vals, None, b_vals, None, sa, sb_kn)
        bias = round_to_format(bits.normal("bias", (N,)) * mag, case.bias)
    expected = grouped_mm_exact(a_vals, a_fmt, b_vals, fmt, sa, sb_kn, gk, bias, case.out)
    absdot = None
    if with_bound:  # sum_k |sa sb A B|, the scales folded in (they vary along K)
        fa = np.where(np.isfinite(a_vals), np.abs(a_vals), 0.0)
        fb = np.where(np.isfinite(b_vals), np.abs(b_vals), 0.0)
        g = sa.shape[1]
        absdot = sum(abs_dot(fa[:, j * gk:(j + 1) * gk], fb[j * gk:(j + 1) * gk])
                     * sa[:, j:j + 1].astype(np.float64) * sb_kn[j:j + 1].astype(np.float64)
                     for j in range(g)) * (1.0 + (g + 2) * 2.0**-52)
    with np.errstate(invalid="ignore", over="ignore"):
        unq = x @ w.T
    if bias is not None:
        unq = unq + bias
    scale_b = (_shape_scale(ws, case.sb, M, N) if case.a == "none"
               else np.array(ws, np.float32, order="C"))
    return CaseData(case, seed, a, b_kn, scale_a, scale_b, bias, expected, absdot,
                    np.ones((1, 1)), x=x, weight_scale=np.asarray(ws, np.float32),
                    input_scale=None, unquantized=unq)


CASE_FIELDS = tuple(f.name for f in fields(Case))
