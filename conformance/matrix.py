"""The case matrix: named grids of :class:`golden.cases.Case` (DESIGN §5).

Each grid is built from small declarative tables: the axes crossed in full, the axes rotated
(data sets, so every scheme meets several), scale-shape variants, layer-level cases and edge
cases. Grids are deterministic lists; ids are unique within a grid.

``smoke``    seconds: one case per scheme, a few edges and the [N,1] weight scale.
``default``  the PR gate: schemes x formats x outputs x bias x layouts x edge-shape grid,
             scale-shape variants, layer level, edge conditions.
``full``     default plus every data set on every scheme, the fnuz formats, fp16 bias, more shapes.
``llm``      real layer shapes (Llama-3.1-8B/70B over TP 1..8, Qwen2.5-7B), M from 1 to 8192.
``vllm``     vLLM's FP8 linear paths at layer level: the default grid's W8A8 cases in the
             loaders' scale shapes, weight-only W8A16 and block FP8 (``--backend=vllm:<Class>``);
             ``vllm-w8a8``, ``vllm-w8a16`` and ``vllm-block`` are its three parts.
"""

from __future__ import annotations

import random
from itertools import product

from golden.cases import Case
from golden.datasets import DATASETS

__all__ = ["GRIDS", "grid", "grid_names", "granularity_cases", "GRANULARITY_ORDERS",
           "GRANULARITY_SHAPE"]

OP_SCHEMES = (("tensor", "tensor"), ("channel", "tensor"), ("tensor", "token"), ("channel", "token"))
LAYER_SCHEMES = tuple(product(("tensor", "channel"), ("static", "dyn-tensor", "dyn-token")))
FMT_PAIRS = (("e4m3fn", "e4m3fn"), ("e5m2", "e5m2"), ("e4m3fn", "e5m2"))
FNUZ_PAIRS = (("e4m3fnuz", "e4m3fnuz"), ("e5m2fnuz", "e5m2fnuz"))
OUTS = ("bf16", "fp16", "fp32")
LAYOUTS = ("kn-t", "kn", "nk")
DATASET_ORDER = ("gauss", "outlier", "rowscale", "range", "onebig", "signed", "mixzero",
                 "maxexp", "subnormal", "zero", "saturate")

# Edge shapes: M = 0, 1, odd M; K and N not multiples of 16; square K == N.
DEFAULT_SHAPES = ((1, 64, 64), (17, 64, 128), (33, 40, 72), (0, 32, 64), (64, 64, 64),
                  (7, 24, 24), (19, 96, 512), (128, 256, 256))
SMOKE_SHAPES = ((17, 64, 128), (5, 24, 40))
FULL_EXTRA_SHAPES = ((3, 1, 1), (2, 17, 33), (255, 130, 300), (96, 96, 96), (1, 4096, 4096),
                     (64, 512, 2048))
LAYER_SHAPES = ((17, 64, 128), (1, 48, 48), (33, 40, 72), (64, 256, 128))


def _canonical_scales(w: str, a: str) -> tuple[str, str]:
    """The scale shapes the usual caller passes: vLLM expands a per-tensor scale to match
    a row-wise partner, because torch takes per-tensor x per-tensor or row-wise x row-wise."""
    if w == "tensor" and a in ("tensor", "static", "dyn-tensor"):
        return "[]", "[]"
    return "[M,1]", "[1,N]"


def _scale_variants(w: str, a: str):
    """Every scale-shape pair real callers pass for this scheme (DESIGN §3)."""
    sas = ("[M,1]",) if a in ("token", "dyn-token") else ("[]", "[1]", "[M,1]")
    sbs = ("[]", "[1]", "[1,N]") if w == "tensor" else ("[N]", "[1,N]", "[N,1]")
    return product(sas, sbs)


def _op_main(shapes, fmt_pairs, biases=(None, "bf16", "fp32")):
    i = 0
    for (w, a), (fa, fb), out, bias, layout, (m, n, k) in product(
        OP_SCHEMES, fmt_pairs, OUTS, biases, LAYOUTS, shapes
    ):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=m, N=n, K=k, level="op", w=w, a=a, fmt_a=fa, fmt_b=fb, out=out,
                   bias=bias, layout=layout, sa=sa, sb=sb,
                   dataset=DATASET_ORDER[i % len(DATASET_ORDER)])
        i += 1


def _op_scale_shapes(shapes):
    for (w, a), (m, n, k), bias in product(OP_SCHEMES, shapes, (None, "bf16")):
        for sa, sb in _scale_variants(w, a):
            if (sa, sb) == _canonical_scales(w, a):
                continue
            yield Case(M=m, N=n, K=k, w=w, a=a, bias=bias, sa=sa, sb=sb, dataset="rowscale")


def _layer(shapes, fmt_pairs, outs=OUTS, biases=(None, "bf16")):
    i = 0
    for (w, a), x, (fa, fb), out, bias, (m, n, k) in product(
        LAYER_SCHEMES, ("bf16", "fp16"), fmt_pairs, outs, biases, shapes
    ):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=m, N=n, K=k, level="layer", w=w, a=a, fmt_a=fa, fmt_b=fb, out=out,
                   bias=bias, sa=sa, sb=sb, x=x,
                   dataset=("gauss", "outlier", "rowscale", "saturate")[i % 4])
        i += 1


VLLM_LAYER_SHAPES = ((3, 32, 48), (24, 24, 24), (1, 48, 48))


_LOADER_SB = {"tensor": ("[]", "[1]"), "channel": ("[N,1]", "[N]")}


def _layer_vllm(shapes=VLLM_LAYER_SHAPES):
    """Layer cases in the shapes vLLM's FP8 loaders hand a linear kernel (e4m3, output in the
    activation dtype): per-channel weight scales as ``[N,1]`` (compressed-tensors) or ``[N]``,
    per-tensor as 0-D or ``[1]``; every incoming weight layout; square K == N and M == 1 among
    the shapes (the bug history of the XPU path, DESIGN §1). Small shapes and alternating bias
    keep the golden store under its 30 MB."""
    i = 0
    for (w, a), (m, n, k), layout in product(LAYER_SCHEMES, shapes, LAYOUTS):
        sa = "[M,1]" if a == "dyn-token" else "[]"
        for sb in _LOADER_SB[w]:
            yield Case(M=m, N=n, K=k, level="layer", w=w, a=a, out="bf16",
                       bias=(None, "bf16")[i % 2], layout=layout, sa=sa, sb=sb, x="bf16",
                       dataset=("gauss", "outlier", "rowscale")[i % 3])
            i += 1


W8A16_SHAPES = VLLM_LAYER_SHAPES + ((4, 32, 64), (5, 48, 40))
BLOCK_SHAPES = ((5, 256, 256), (1, 128, 384), (17, 192, 256), (2, 384, 128))


def _layer_w8a16(shapes=W8A16_SHAPES):
    """Weight-only W8A16 (``a=none``): the loaders' weight-scale shapes, every layout, bf16
    and fp16 activations. K % N == 0 with N > 1 (``[N,1]`` read as a block scale divides
    evenly: silent) and K % N != 0 (it fails the op's check) are both among the shapes."""
    i = 0
    for w, (m, n, k), layout, x in product(("tensor", "channel"), shapes, LAYOUTS, ("bf16", "fp16")):
        for sb in _LOADER_SB[w]:
            yield Case(M=m, N=n, K=k, level="layer", w=w, a="none", out=x, x=x,
                       bias=(None, x)[i % 2], layout=layout, sa="[]", sb=sb,
                       dataset=("gauss", "outlier", "rowscale")[i % 3])
            i += 1


def _layer_block(shapes=BLOCK_SHAPES):
    """Block FP8 (128 x 128 weight blocks, 1 x 128 activation groups): K a multiple of 128
    (vLLM asserts it), N ragged against 128 in one shape, every layout."""
    for i, ((m, n, k), layout) in enumerate(product(shapes, LAYOUTS)):
        yield Case(M=m, N=n, K=k, level="layer", w="block", a="group", sa="[M,G]",
                   sb="[Nb,Kb]", bias=(None, "bf16")[i % 2], layout=layout,
                   dataset=("gauss", "outlier", "rowscale")[i % 3])


def _vllm():
    """vLLM's FP8 linear paths at layer level: W8A8 in the loaders' shapes, W8A16, block."""
    yield from _layer_vllm()
    yield from _layer_w8a16()
    yield from _layer_block()


def _edges():
    """NaN/inf propagation, all-zero inputs, fp16 overflow, saturation, subnormals."""
    for (w, a), out in product(OP_SCHEMES, OUTS):
        sa, sb = _canonical_scales(w, a)
        base = dict(M=9, N=32, K=48, w=w, a=a, out=out, sa=sa, sb=sb)
        yield Case(**base, edge="nan-a")
        yield Case(**base, fmt_a="e5m2", fmt_b="e5m2", edge="nan-a")
        yield Case(**base, fmt_a="e5m2", fmt_b="e5m2", edge="inf-a")
        yield Case(**base, bias="bf16", edge="zeros")
        yield Case(**base, dataset="subnormal")
        yield Case(**base, dataset="saturate")
        if out == "fp16":
            yield Case(**base, dataset="maxexp", edge="overflow")
            yield Case(**base, fmt_a="e5m2", fmt_b="e5m2", dataset="maxexp")
    for (w, a), edge in product(LAYER_SCHEMES, ("nan-a", "inf-a", "zeros")):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=9, N=32, K=48, level="layer", w=w, a=a, sa=sa, sb=sb, edge=edge)
    for w, a in LAYER_SCHEMES:
        sa, sb = _canonical_scales(w, a)
        yield Case(M=9, N=32, K=48, level="layer", w=w, a=a, sa=sa, sb=sb, dataset="saturate")


def _smoke():
    for (w, a), (m, n, k) in product(OP_SCHEMES, SMOKE_SHAPES):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=m, N=n, K=k, w=w, a=a, sa=sa, sb=sb, bias="bf16")
    for w, a in LAYER_SCHEMES:
        sa, sb = _canonical_scales(w, a)
        yield Case(M=17, N=64, K=128, level="layer", w=w, a=a, sa=sa, sb=sb)
    yield Case(M=9, N=32, K=48, fmt_a="e5m2", fmt_b="e4m3fn", out="fp32", dataset="range")
    yield Case(M=9, N=32, K=48, edge="nan-a")
    yield Case(M=9, N=32, K=48, out="fp16", dataset="maxexp", edge="overflow")
    yield Case(M=0, N=32, K=64)
    yield Case(M=7, N=24, K=24, layout="kn")
    # the seed change's per-channel weight scale as [N,1] (DESIGN §1), at K == N
    yield Case(M=24, N=24, K=24, w="channel", bias="bf16", sb="[N,1]", dataset="rowscale")


def _default():
    yield from _op_main(DEFAULT_SHAPES, FMT_PAIRS)
    yield from _op_scale_shapes(((17, 64, 128), (24, 24, 24)))
    yield from _layer(LAYER_SHAPES, FMT_PAIRS[:2])
    yield from _layer_vllm()
    yield from _edges()


def _full():
    yield from _default()
    yield from _op_main(FULL_EXTRA_SHAPES, FMT_PAIRS + FNUZ_PAIRS, biases=(None, "fp16"))
    for (w, a), ds in product(OP_SCHEMES, DATASETS):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=33, N=80, K=1024, w=w, a=a, sa=sa, sb=sb, dataset=ds, bias="fp32",
                   out="fp32")


# Llama-3.1-8B, Llama-3.1-70B (column-parallel N / row-parallel K split over TP), Qwen2.5-7B.
_LLAMA8B = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
_LLAMA70B = ((10240, 8192, "col"), (8192, 8192, "row"), (57344, 8192, "col"), (8192, 28672, "row"))
_QWEN7B = ((4608, 3584), (3584, 3584), (37888, 3584), (3584, 18944))
LLM_M = (1, 7, 33, 255, 1023, 8192)


def llm_shapes():
    """(N, K) of real FP8 linear layers."""
    shapes = list(_LLAMA8B) + list(_QWEN7B)
    for tp in (1, 2, 4, 8):
        for n, k, split in _LLAMA70B:
            shapes.append((n // tp, k) if split == "col" else (n, k // tp))
    return list(dict.fromkeys(shapes))


def _llm():
    for (n, k), m, (w, a) in product(llm_shapes(), LLM_M, (("channel", "token"), ("tensor", "tensor"))):
        sa, sb = _canonical_scales(w, a)
        yield Case(M=m, N=n, K=k, w=w, a=a, sa=sa, sb=sb, dataset="gauss")


GRIDS = {"smoke": _smoke, "default": _default, "full": _full, "llm": _llm, "vllm": _vllm,
         "vllm-w8a8": _layer_vllm, "vllm-w8a16": _layer_w8a16, "vllm-block": _layer_block}


def grid_names() -> list[str]:
    return list(GRIDS)


def grid(name: str) -> list[Case]:
    """The cases of a grid, without duplicates; an unknown name lists the valid ones."""
    try:
        make = GRIDS[name]
    except KeyError:
        raise ValueError(f"unknown grid {name!r}; valid grids: {', '.join(GRIDS)}") from None
    return list(dict.fromkeys(make()))


# --- mixed scale granularities at one shape (conformance/test_mixed_granularity.py) ---------

GRANULARITY_SHAPE = (17, 64, 128)  # M, N, K of the mixed-granularity sequences
# op level: the activation and weight scale granularities, each with its scheme
_OP_SA = {"[]": "tensor", "[M,1]": "token"}
_OP_SB = {"[]": "tensor", "[N]": "channel", "[1,N]": "channel", "[N,1]": "channel"}
# layer level: the layout vLLM's loaders hand each weight scheme (block FP8 keeps [N,K])
_LAYER_LAYOUT = {"block": "nk"}


def granularity_cases(grid_name: str = "vllm") -> list[Case]:
    """One op and one layer shape; the cases differ only in scale granularity (and the
    scheme fields that go with it). Layer granularities are those of the selected grid's
    layer cases (``--grid``), so a run over one vLLM path mixes only that path's."""
    M, N, K = GRANULARITY_SHAPE
    op = [Case(M=M, N=N, K=K, a=a, sa=sa, w=w, sb=sb)
          for (sa, a), (sb, w) in product(_OP_SA.items(), _OP_SB.items())]
    schemes = dict.fromkeys((c.w, c.a, c.sa, c.sb) for c in grid(grid_name)
                            if c.level == "layer")
    layer = [Case(M=M, N=N, K=K, level="layer", w=w, a=a, sa=sa, sb=sb, out="bf16", x="bf16",
                  layout=_LAYER_LAYOUT.get(w, "kn-t")) for w, a, sa, sb in schemes]
    return op + layer


GRANULARITY_ORDERS = {
    "forward": lambda cs: list(cs),
    "reverse": lambda cs: cs[::-1],
    "shuffled": lambda cs: random.Random(8).sample(cs, len(cs)),  # fixed: reproducible
}
