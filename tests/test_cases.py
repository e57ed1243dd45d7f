"""Cases and grids: ids parse back, bad ids and parameters are rejected clearly, grids cover the
edge shapes, and ``build`` gives the same bytes for a case id on any run, process and order."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.matrix import grid, grid_names
from golden.cases import (
    A_SCHEMES,
    BIASES,
    EDGES,
    LAYOUTS,
    SA_SHAPES,
    W_SCHEMES,
    Case,
    CaseError,
    build,
)
from golden.codecs import decode
from golden.datasets import DATASETS
from golden.formats import FP8_FORMATS, OUT_FORMATS
from kernel.registry import get_backend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grids():
    return {name: grid(name) for name in ("smoke", "default", "full")}


# =============================================================================================
# ids
# =============================================================================================


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_id_round_trips_for_every_case(grids, name):
    bad = [c.id for c in grids[name] if Case.from_id(c.id) != c]
    assert not bad, f"{len(bad)} ids of grid {name} do not parse back, e.g. {bad[:3]}"


def test_id_round_trips_for_a_sample_of_full(grids):
    cases = grids["full"]
    sample = cases[::7] + cases[-50:]
    for c in sample:
        back = Case.from_id(c.id)
        assert back == c and back.id == c.id, c.id


def test_id_is_its_str_and_is_stable():
    c = Case(M=17, N=4096, K=4096, w="channel", a="token", out="bf16", bias="bf16",
             sa="[M,1]", sb="[1,N]", dataset="outlier")
    assert str(c) == c.id == (
        "op|w=channel,a=token|e4m3|bf16|bias=bf16|M17xN4096xK4096|b=kn-t|sa=[M,1],sb=[1,N]"
        "|set=outlier")
    layer = Case(M=1, N=8, K=8, level="layer", w="tensor", a="dyn-token", fmt_a="e4m3fn",
                 fmt_b="e5m2", sa="[M,1]", x="fp16", edge="nan-a")
    assert layer.id == ("layer|w=tensor,a=dyn-token|e4m3xe5m2|bf16|bias=none|M1xN8xK8|b=kn-t"
                        "|sa=[M,1],sb=[]|set=gauss|x=fp16|edge=nan-a")
    assert Case.from_id(layer.id) == layer


def _valid_case_kwargs():
    level = st.sampled_from(("op", "layer"))

    @st.composite
    def build_kw(draw):
        lv = draw(level)
        a = draw(st.sampled_from(A_SCHEMES[lv]))
        w = "block" if a == "group" else draw(st.sampled_from(W_SCHEMES[:2]))
        sa = {"token": "[M,1]", "dyn-token": "[M,1]", "none": "[]", "group": "[M,G]"}.get(a)
        sa = sa or draw(st.sampled_from(SA_SHAPES[:3]))
        sb = draw(st.sampled_from({"tensor": ("[]", "[1]", "[1,N]"),
                                   "channel": ("[N]", "[1,N]", "[N,1]"),
                                   "block": ("[Nb,Kb]",)}[w]))
        fa = draw(st.sampled_from(FP8_FORMATS))
        fb = draw(st.sampled_from(FP8_FORMATS))
        edge = draw(st.sampled_from(tuple(EDGES)))
        if edge == "inf-a" and lv == "op":
            fa = "e5m2"
        x = draw(st.sampled_from(("bf16", "fp16"))) if lv == "layer" else "bf16"
        out = draw(st.sampled_from(OUT_FORMATS))
        if a in ("none", "group"):  # one FP8 format, no edge; weight-only outputs in x's dtype
            fb, edge = fa, ""
            out = x if a == "none" else out
        return dict(
            M=draw(st.integers(0, 9000)), N=draw(st.integers(1, 9000)),
            K=draw(st.integers(1, 20000)), level=lv, w=w, a=a, fmt_a=fa, fmt_b=fb, out=out,
            bias=draw(st.sampled_from(BIASES)), layout=draw(st.sampled_from(tuple(LAYOUTS))),
            sa=sa, sb=sb, dataset=draw(st.sampled_from(tuple(DATASETS))), x=x, edge=edge)

    return build_kw()


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_valid_case_kwargs())
def test_id_round_trips_for_any_valid_case(kw):
    """Every Case the constructor accepts has an id that parses back to an equal Case
    (otherwise two different cases share one id and a rerun runs the other one)."""
    c = Case(**kw)
    assert Case.from_id(c.id) == c, f"{kw} -> {c.id!r} parses back as {Case.from_id(c.id)!r}"


GOOD = "op|w=tensor,a=tensor|e4m3|bf16|bias=none|M17xN64xK128|b=kn-t|sa=[],sb=[]|set=gauss"


def _with(i: int, value: str) -> str:
    parts = GOOD.split("|")
    parts[i] = value
    return "|".join(parts)


@pytest.mark.parametrize("bad,needle", [
    ("garbage", "fields"),
    ("", "fields"),
    ("op|w=tensor,a=tensor|e4m3|bf16", "fields"),
    (_with(1, "w=tensor"), "w=tensor"),
    (_with(2, "e9m9"), "e9m9"),
    (_with(2, "e4m3xe7m1"), "e7m1"),
    (_with(5, "M17xN64"), "M17xN64"),
    (_with(5, "M-1xN64xK128"), "M-1xN64xK128"),
    (_with(7, "sa=[],sb=N"), "sa=[],sb=N"),
    (GOOD + "|colour=red", "colour=red"),
])
def test_malformed_id_raises_case_error_naming_the_problem(bad, needle):
    with pytest.raises(CaseError) as exc:
        Case.from_id(bad)
    assert needle in str(exc.value), str(exc.value)


@pytest.mark.parametrize("bad,field,choice", [
    (_with(0, "kernel"), "level", "'op'"),
    (_with(3, "fp8"), "out", "'bf16'"),
    (_with(4, "bias=int8"), "bias", "'fp32'"),
    (_with(6, "b=nk-t"), "layout", "'kn-t'"),
    (_with(8, "set=imagenet"), "dataset", "'gauss'"),
    (_with(7, "sa=[M,1],sb=[N]"), "sb", "'[1,N]'"),
    (GOOD + "|edge=melt", "edge", "'nan-a'"),
])
def test_id_with_an_invalid_value_names_field_and_choices(bad, field, choice):
    with pytest.raises(CaseError) as exc:
        Case.from_id(bad)
    msg = str(exc.value)
    assert f"{field}=" in msg and choice in msg, msg


@pytest.mark.parametrize("kw,field,choices", [
    (dict(fmt_a="e3m4"), "fmt_a", FP8_FORMATS),
    (dict(fmt_b="float8"), "fmt_b", FP8_FORMATS),
    (dict(out="fp8"), "out", OUT_FORMATS),
    (dict(layout="row"), "layout", tuple(LAYOUTS)),
    (dict(w="tensor", sb="[N]"), "sb", ("[]", "[1]", "[1,N]")),
    (dict(w="channel", sb="[]"), "sb", ("[N]", "[1,N]", "[N,1]")),
    (dict(a="token", sa="[]"), "sa", ("[M,1]",)),
    (dict(level="layer", a="token", sa="[M,1]"), "a", ("static", "dyn-tensor", "dyn-token")),
    (dict(dataset="imagenet"), "dataset", tuple(DATASETS)),
    (dict(edge="inf-a"), "edge", ("e4m3fn",)),  # op-level inf-a needs a format with inf
])
def test_invalid_case_params_name_field_and_choices(kw, field, choices):
    with pytest.raises(CaseError) as exc:
        Case(**{"M": 4, "N": 8, "K": 16, **kw})
    msg = str(exc.value)
    assert field in msg, msg
    for ch in choices:
        assert ch in msg, f"{ch!r} missing from {msg!r}"


@pytest.mark.parametrize("dims", [dict(M=-1), dict(N=-3), dict(K=-1), dict(N=0), dict(K=0),
                                  dict(M=1.5)])
def test_invalid_dimensions(dims):
    with pytest.raises(CaseError) as exc:
        Case(**{"M": 4, "N": 8, "K": 16, **dims})
    (name, value), = dims.items()
    assert f"{name}={value!r}" in str(exc.value), str(exc.value)
    assert Case(M=0, N=8, K=16).M == 0  # M = 0 is allowed


# =============================================================================================
# grids
# =============================================================================================


@pytest.mark.parametrize("name", ["smoke", "default", "full", "llm"])
def test_ids_unique_within_grid(name):
    ids = [c.id for c in grid(name)]
    assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
    assert ids, name


def test_unknown_grid_lists_valid_ones():
    with pytest.raises(ValueError) as exc:
        grid("nope")
    msg = str(exc.value)
    assert "nope" in msg
    for name in ("smoke", "default", "full", "llm"):
        assert name in msg
    assert set(grid_names()) >= {"smoke", "default", "full", "llm"}


def test_grids_are_deterministic():
    assert [c.id for c in grid("default")] == [c.id for c in grid("default")]


def test_default_grid_coverage(grids):
    cases = grids["default"]
    torch_cpu = get_backend("torch")
    runnable = [c for c in cases if torch_cpu.why_not(c, "cpu") is None]
    assert len(runnable) >= 2000, len(runnable)
    for where, cs in (("default", cases), ("torch-cpu runnable", runnable)):
        assert any(c.M == 0 for c in cs), where
        assert any(c.M == 1 for c in cs), where
        assert any(c.M % 2 == 1 and c.M > 1 for c in cs), where
        assert any(c.K % 16 for c in cs), where
        assert any(c.N % 16 for c in cs), where
        assert any(c.K == c.N for c in cs), where
        assert {c.out for c in cs} == set(OUT_FORMATS), where
        assert {c.level for c in cs} == {"op", "layer"}, where
    assert {c.layout for c in cases} == set(LAYOUTS)
    assert {c.layout for c in runnable} == {"kn", "kn-t"}  # torch takes mat2 as [K,N]
    # a square case in every layout: the transposed-twice bug is only visible when K == N
    assert {c.layout for c in cases if c.K == c.N and c.M > 0} == set(LAYOUTS)


def test_full_grid_contains_default(grids):
    full = set(grids["full"])
    assert all(c in full for c in grids["default"])
    assert {c.fmt_a for c in grids["full"]} == set(FP8_FORMATS)


# =============================================================================================
# build: pinned bytes
# =============================================================================================

PIN_IDS = [
    "op|w=tensor,a=tensor|e4m3|bf16|bias=none|M17xN64xK128|b=kn-t|sa=[],sb=[]|set=gauss",
    "op|w=channel,a=token|e5m2|fp16|bias=bf16|M19xN96xK512|b=kn|sa=[M,1],sb=[1,N]|set=outlier",
    "op|w=channel,a=tensor|e4m3xe5m2|fp32|bias=fp32|M7xN24xK24|b=nk|sa=[1],sb=[N,1]|set=range",
    "op|w=tensor,a=tensor|e4m3fnuz|fp32|bias=fp16|M3xN1xK1|b=kn-t|sa=[],sb=[]|set=subnormal",
    "op|w=tensor,a=token|e5m2fnuz|bf16|bias=none|M33xN40xK72|b=kn-t|sa=[M,1],sb=[1,N]|set=maxexp",
    "layer|w=channel,a=dyn-token|e4m3|bf16|bias=bf16|M33xN40xK72|b=kn-t|sa=[M,1],sb=[1,N]"
    "|set=outlier|x=fp16",
    "layer|w=tensor,a=static|e5m2|fp16|bias=none|M17xN64xK128|b=kn-t|sa=[],sb=[]|set=saturate"
    "|x=bf16",
    "op|w=tensor,a=tensor|e5m2|bf16|bias=none|M9xN32xK48|b=kn-t|sa=[],sb=[]|set=gauss"
    "|edge=inf-a",
    "op|w=tensor,a=tensor|e4m3|fp16|bias=none|M9xN32xK48|b=kn-t|sa=[],sb=[]|set=maxexp"
    "|edge=overflow",
    "op|w=tensor,a=tensor|e4m3|bf16|bias=none|M0xN32xK64|b=kn-t|sa=[],sb=[]|set=gauss",
]

# sha256 of build(case, seed=0), computed once (see digest()); a change means the generated
# bytes or the reference output changed: every stored golden value and report is then stale.
PINNED = {
    PIN_IDS[0]: "2dd9ddaf1fff017602a8c43fe05c0d9fd30281af2dc0f0b543b3d025d7d97370",
    PIN_IDS[1]: "218234be1a7559a31d42b3fa52f88f64e4b2b5bc8ad12206d57ec3429eb13974",
    PIN_IDS[2]: "a5d31ef0e9d007641ca0db4e7e9c60b121471dd1e5609713c60c00e7f83ae3df",
    PIN_IDS[3]: "0bce1c72af344a7c00d6e35967249e86d646868078e17803d0d1e1d32f058b83",
    PIN_IDS[4]: "c06ca8f4a6e048241494c5c0450954d011f8b138e0c1d7df591f8a929580f338",
    PIN_IDS[5]: "37806a740cf4715aea0657b8755ee0c4e318b854e5be031b2c4967e69531f780",
    PIN_IDS[6]: "643b0ff77aee43ebb67ad5c8ada4abd88c410ed178d35202a3b7e52fff513fcc",
    PIN_IDS[7]: "206b49dd853e0c75752737f4f446a36c4a7150f6f9a8daa9b2a0bdfd3ab356bc",
    PIN_IDS[8]: "5e17fdf90f9d2a940e29694dc15ab7130bbe0bdf033cbfdf9f80d2b54605ddcc",
    PIN_IDS[9]: "ceec4e4aa74d71f3cf9a0cf0d83b629c3c8a1ce06d2a090bf3716a2b077df3be",
}


def digest(data) -> str:
    """sha256 over dtype, size and raw bytes of the inputs and of Y* (NaNs canonical), plus the
    shapes of A, B and Y*. Scale shapes are checked by test_scale_shapes_and_expected, not here."""
    exp = np.where(np.isnan(data.expected), np.nan, data.expected).astype("<f8")
    h = hashlib.sha256()
    for name, arr in (("a", data.a), ("b_kn", data.b_kn), ("scale_a", data.scale_a),
                      ("scale_b", data.scale_b), ("bias", data.bias_bits), ("expected", exp)):
        if arr is None:
            h.update(f"{name}:none;".encode())
            continue
        arr = np.ascontiguousarray(arr)
        shape = arr.shape if name in ("a", "b_kn", "expected") else arr.size
        h.update(f"{name}:{arr.dtype.str}:{shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def test_pin_cases_are_valid_and_varied():
    cases = [Case.from_id(i) for i in PIN_IDS]
    assert [c.id for c in cases] == PIN_IDS
    assert {c.level for c in cases} == {"op", "layer"}
    assert len({c.dataset for c in cases}) >= 5 and len({c.fmt_a for c in cases}) == 4
    assert any(c.edge for c in cases) and any(c.M == 0 for c in cases)


@pytest.mark.parametrize("case_id", PIN_IDS)
def test_build_bytes_are_pinned(case_id):
    assert digest(build(Case.from_id(case_id), seed=0)) == PINNED[case_id]


def test_build_is_order_independent():
    forward = {i: digest(build(Case.from_id(i), 0)) for i in PIN_IDS}
    backward = {i: digest(build(Case.from_id(i), 0)) for i in reversed(PIN_IDS)}
    assert forward == backward
    # interleaved with builds of other cases and seeds
    other = [digest(build(Case.from_id(PIN_IDS[0]), seed=s)) for s in (1, 2)]
    assert other[0] != other[1] != forward[PIN_IDS[0]]
    assert digest(build(Case.from_id(PIN_IDS[1]), 0)) == forward[PIN_IDS[1]]


def test_build_bytes_same_in_fresh_process_with_other_hash_seed():
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_cases import PIN_IDS, digest\n"
        "from golden.cases import Case, build\n"
        "print(json.dumps({i: digest(build(Case.from_id(i), 0)) for i in reversed(PIN_IDS)}))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = {i: digest(build(Case.from_id(i), 0)) for i in PIN_IDS}
    assert theirs == ours


def test_seed_changes_inputs():
    c = Case.from_id(PIN_IDS[0])
    d0, d1 = build(c, 0), build(c, 1)
    assert not np.array_equal(d0.a, d1.a)
    assert np.array_equal(d0.a, build(c, 0).a)


# =============================================================================================
# build: layouts and shapes
# =============================================================================================


@pytest.mark.parametrize("layout", ["nk", "kn-t", "kn"])
def test_b_layouts(layout):
    c = Case(M=5, N=24, K=40, layout=layout)
    d = build(c, 0)
    K, N = c.K, c.N
    b = d.b()
    assert b.dtype == np.uint8 and d.b_kn.shape == (K, N)
    if layout == "nk":
        assert b.shape == (N, K) and b.flags.c_contiguous
        logical = b.T
    elif layout == "kn-t":
        assert b.shape == (K, N) and b.strides == (1, K) and b.flags.f_contiguous
        assert not b.flags.c_contiguous
        logical = b
    else:
        assert b.shape == (K, N) and b.flags.c_contiguous and b.strides == (N, 1)
        logical = b
    np.testing.assert_array_equal(logical, d.b_kn)


def test_same_logical_b_across_layouts_of_one_build():
    d = build(Case(M=3, N=16, K=16, layout="kn-t"), 0)
    d_nk = type(d)(**{**d.__dict__, "case": d.case.replace(layout="nk")})
    d_kn = type(d)(**{**d.__dict__, "case": d.case.replace(layout="kn")})
    np.testing.assert_array_equal(d_nk.b().T, d.b())
    np.testing.assert_array_equal(d_kn.b(), d.b())
    assert d_nk.b().shape == (16, 16) and d.b().strides == (1, 16) and d_kn.b().strides == (16, 1)


@pytest.mark.parametrize("sa,sb,w,a", [("[]", "[]", "tensor", "tensor"),
                                       ("[1]", "[1,N]", "tensor", "tensor"),
                                       ("[M,1]", "[N]", "channel", "token"),
                                       ("[M,1]", "[N,1]", "channel", "tensor")])
def test_scale_shapes_and_expected(sa, sb, w, a):
    c = Case(M=6, N=10, K=32, w=w, a=a, sa=sa, sb=sb, bias="bf16")
    d = build(c, 0)
    shape = {"[]": (), "[1]": (1,), "[M,1]": (6, 1), "[N]": (10,), "[1,N]": (1, 10),
             "[N,1]": (10, 1)}
    assert d.scale_a.shape == shape[sa], f"sa={sa} built with shape {d.scale_a.shape}"
    assert d.scale_b.shape == shape[sb], f"sb={sb} built with shape {d.scale_b.shape}"
    assert d.scale_a.dtype == np.float32 and d.scale_b.dtype == np.float32
    assert d.scale_a.flags.c_contiguous and d.scale_b.flags.c_contiguous
    assert d.expected.shape == (6, 10) and d.expected.dtype == np.float64
    assert d.bias.shape == (10,) and d.bias_bits.dtype == np.uint16
    np.testing.assert_array_equal(decode(d.bias_bits, "bf16"), d.bias)
    if w == "channel":
        assert len(set(d.scale_b.reshape(-1).tolist())) > 1
    if a == "token":
        assert len(set(d.scale_a.reshape(-1).tolist())) > 1


@pytest.mark.parametrize("kw,needle", [
    (dict(w="block", a="static", sb="[Nb,Kb]"), "w='block', a='static'"),
    (dict(w="tensor", a="group", sa="[M,G]"), "w='tensor', a='group'"),
    (dict(a="none", out="fp16", x="bf16"), "out='fp16' must equal x='bf16'"),
    (dict(a="none", fmt_b="e5m2"), "fmt_a == fmt_b"),
    (dict(a="none", sa="[M,1]"), "sa='[M,1]'"),
    (dict(w="block", a="group", sa="[M,G]", sb="[N]"), "sb='[N]'"),
])
def test_weight_only_and_block_schemes_reject_impossible_combinations(kw, needle):
    """The W8A16 and block layer schemes name what is wrong with a bad combination."""
    with pytest.raises(CaseError) as exc:
        Case(M=4, N=8, K=256, level="layer", **kw)
    assert needle in str(exc.value), str(exc.value)


def test_block_scale_shapes_follow_k_and_n():
    from golden.cases import scale_shape
    assert scale_shape("[M,G]", 5, 192, 256) == (5, 2)
    assert scale_shape("[Nb,Kb]", 5, 192, 384) == (2, 3)
