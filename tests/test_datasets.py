"""Tests of golden.rng (counter-based bits) and golden.datasets (named GEMM input sets)."""

from __future__ import annotations

import ast
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

from golden import rng
from golden.codecs import decode, encode
from golden.datasets import ACT_MAX, DATASETS, get_dataset, make_activations, make_weights
from golden.formats import get_format
from golden.rng import Bits, splitmix64, stream_key

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("e4m3fn", "e4m3fn"), ("e5m2", "e5m2"), ("e4m3fn", "e5m2"), ("e4m3fnuz", "e5m2fnuz")]
NAMES = list(DATASETS)


# ---- pinned bytes -------------------------------------------------------------------------------


def _sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def pin_digests() -> dict[str, str]:
    """sha256 of fixed outputs: a few Bits streams, every data set at 3x5x7 (codes and values)."""
    b = Bits("pin", 7)
    out = {
        "uint64": _sha(b.uint64("u", 16)),
        "uniform": _sha(b.uniform("f", (4, 5))),
        "normal": _sha(b.normal("n", 33)),
        "integers": _sha(b.integers("i", 20, -1000, 10**12), b.integers("j", 20, 0, 7)),
        "choice_mask": _sha(b.choice_mask("c", 40, 0.3)),
    }
    for fmt in ("e4m3fn", "e5m2"):
        values = []
        for name, ds in DATASETS.items():
            a, bb = ds.make(b, 3, 5, 7, fmt, fmt)
            out[f"{name}/{fmt}"] = _sha(encode(a, fmt, "saturate"), encode(bb, fmt, "saturate"))
            values += [a, bb]
        out[f"values/{fmt}"] = _sha(*values)
    return out


# Computed once (NumPy 2.4, Python 3.11, x86-64); a change means every stored case input changes:
# bump golden.GENERATOR_VERSION and regenerate the golden store, never just these strings.
PINNED = {
    "uint64": "2d47138f129242b944e17ce948aac63319aea2d5cb1d419cf028b352c56d2361",
    "uniform": "1d71455c7ff98da8faede70dce4f1814618ebfc28054619b18ef692170038fbd",
    "normal": "92bc7720b334fadf3ad6d52bd89697d5cc97a5bc6ae34b4729c5731a5467c59c",
    "integers": "91e7bd3a895cc767b94147e9e660a450f09913527c49dc0750e9b5930c18cc77",
    "choice_mask": "c0994dd02ba8d39bd5cd369c1963e11919b4a59789f0dcc97a0c1d26c0232f0d",
    "zero/e4m3fn": "fd364c0cd8c641abfaafdb5ba8aed9aef0264e6bf045c023a6ce71f2d3f00239",
    "maxexp/e4m3fn": "350392bcc79e844c558313eac85e8cdaee3836f92922b0489bf54cf07d026077",
    "onebig/e4m3fn": "0086c49a0c8d7339dad419197ecdfcf813c60d523eea56b5e319374904fbb390",
    "range/e4m3fn": "0fd796656af0b4d8936496c9c46f8f3e52e8c8ee3c2bd84d6c761f7bd9fe8c8d",
    "mixzero/e4m3fn": "45f566968e5e1b8f2ce88ebfe954c2044d7e132bd425bb42974440547ada2188",
    "signed/e4m3fn": "fa851f0f9662f0ee06b3e2d854845d5eab89f59997cfd12a4f8e77d0b4da55d0",
    "gauss/e4m3fn": "d9a4455ea1145e8e06dadeafdcc293565d2ba3bf644f670547f6637aac69e74b",
    "outlier/e4m3fn": "78132daa2f6cafe3227a66b7b3452dd6ca13a5d97307471958dd8d50a508cf8e",
    "rowscale/e4m3fn": "292ccc73e4b627a48878d64cff3a0d43015d741422789dcfa808833d55b974a1",
    "saturate/e4m3fn": "8b391d807ff72a982e9f67f3b98dfd262be16a0723601060261fad41e6f077b7",
    "subnormal/e4m3fn": "60985e1580d6671feec951aa791fd21033ce710e54606756add9c37b626af5be",
    "values/e4m3fn": "0d90be5f20c349701dbbab168ea7689f17b97ea6cb75ec8e0066a5d54b5691a4",
    "zero/e5m2": "25a5af1d00b316f83c17c361ac6ed0b7247f0b1c9d618f30f1746745c9e4124f",
    "maxexp/e5m2": "088e6fa2fb55c8166deab6ec7cd544a7f32dd571806021cf8eb45af1c49d196c",
    "onebig/e5m2": "77c9f6b0b4ca218b45ec737e2a7ee57bd476e9c95b45f4da5677cd02a6647593",
    "range/e5m2": "537f56040c686a64f0d2adfdc960acb61d718b10e66729c369bfc373536e5517",
    "mixzero/e5m2": "a5ec461407de1219bb28fe5f581895edad2fa18b44671cb732f64294d071c1cc",
    "signed/e5m2": "cd1bfd940f9cdda7ef18351d2271aa28990a055315f191c4dad0c76db96cdf84",
    "gauss/e5m2": "56994f1b50e9052477adcd8db38a41e71641b83aeb0dd8f1166868a2c17862b1",
    "outlier/e5m2": "8dd3a9e0d31bd6db718c0dfb7d1eff9e7ab21617067e4a0d6a45ba0b45e4db5a",
    "rowscale/e5m2": "d1e833785e90cc8bbd6de74dd73f1be1a572de768565f0406a209223a9bd2826",
    "saturate/e5m2": "b3ce5c1b6d1ee6a05de05f6fd8318222981fbe3af98f3d90ccb46e80fb3250ad",
    "subnormal/e5m2": "93d0fd7659fd39eb23980618fc1662d9c086fb41d5d90954beb0338c33125822",
    "values/e5m2": "327b1c7788f88126b3ae005e2652be6f5b986e8b1b08b36c0e74dc198fd7b788",
}


def test_pinned_digests():
    assert pin_digests() == PINNED


def test_same_bytes_in_fresh_interpreter_with_other_hash_seed():
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
        "import test_datasets as t; print(json.dumps(t.pin_digests()))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    res = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(ROOT / "tests")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(ROOT),
    )
    assert json.loads(res.stdout) == pin_digests()


def test_golden_sources_do_not_use_np_random_or_torch():
    for f in ("rng.py", "datasets.py"):
        tree = ast.parse((ROOT / "golden" / f).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr != "random", f"{f}:{node.lineno} uses .random"
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""] + [a.name for a in node.names]
            for m in mods:
                assert m.split(".")[0] not in ("torch", "random") and "random" not in m.split(
                    "."
                ), (f, m)


# ---- the bit generator --------------------------------------------------------------------------


def _splitmix_ref(seed: int, n: int) -> list[int]:
    m, s, out = (1 << 64) - 1, seed, []
    for _ in range(n):
        s = (s + 0x9E3779B97F4A7C15) & m
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append(z ^ (z >> 31))
    return out


def test_splitmix64_matches_reference():
    # Vigna's splitmix64.c, seed 1234567.
    known = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]
    assert splitmix64(1234567, 0, 5).tolist() == known
    key = stream_key("k", 3, "s")
    assert splitmix64(key, 0, 50).tolist() == _splitmix_ref(key, 50)
    assert splitmix64(key, 17, 5).tolist() == _splitmix_ref(key, 22)[17:]
    assert splitmix64(2**64 - 1, 0, 3).tolist() == _splitmix_ref(2**64 - 1, 3)


def test_draws_across_the_scratch_chunks_match_the_reference():
    """The generator works in per-thread scratch buffers of CHUNK words: draws that cross a
    chunk, and Irwin-Hall normals (6 words each) of more than one chunk, keep their values."""

    key = stream_key("k", 3, "s")
    n = rng.CHUNK + 40
    ref = _splitmix_ref(key, n)
    assert splitmix64(key, 0, n).tolist() == ref
    assert splitmix64(key, rng.CHUNK - 7, 20).tolist() == ref[rng.CHUNK - 7:rng.CHUNK + 13]
    b = Bits("k", 3)
    normal = b.normal("s", rng.CHUNK // 6 + 5)
    words = _splitmix_ref(stream_key("k", 3, "s"), 6 * normal.size)
    for i in (0, rng.CHUNK // 6 - 1, rng.CHUNK // 6, normal.size - 1):
        halves = sum((w >> 32) + (w & 0xFFFFFFFF) for w in words[6 * i:6 * i + 6])
        assert normal[i] == (halves - (6 << 32)) * 2.0**-32, i
    assert b.uint64("s", n).tolist() == ref  # the scratch is not handed out


def test_stream_key_separates_parts():
    keys = {
        stream_key("ab", 1, "c"),
        stream_key("a", 1, "bc"),
        stream_key("a", 11, "c"),
        stream_key("a1", 1, "c"),
        stream_key("ab", -1, "c"),
        stream_key("ab", 1, "c "),
    }
    assert len(keys) == 6
    assert stream_key("ab", 1, "c") == stream_key("ab", np.int64(1), "c")


def _all_draws(b: Bits, n: int = 1000) -> list[np.ndarray]:
    return [
        b.uint64("u", n),
        b.uniform("f", n),
        b.normal("g", n),
        b.integers("i", n, -5, 2**40),
        b.choice_mask("c", n, 0.25),
    ]


def test_deterministic_and_order_independent():
    first = _all_draws(Bits("case", 1))
    b = Bits("case", 1)
    b.normal("other", 77)
    later = _all_draws(b)
    b2 = Bits("case", 1)
    reverse = [
        b2.choice_mask("c", 1000, 0.25),
        b2.integers("i", 1000, -5, 2**40),
        b2.normal("g", 1000),
        b2.uniform("f", 1000),
        b2.uint64("u", 1000),
    ][::-1]
    for x, y, z in zip(first, later, reverse, strict=True):
        assert np.array_equal(x, y) and np.array_equal(x, z)


def test_value_depends_only_on_index():
    b = Bits("case", 1)
    assert np.array_equal(b.uint64("u", 10), b.uint64("u", 1000)[:10])
    assert np.array_equal(b.normal("g", (3, 4)), b.normal("g", 12).reshape(3, 4))
    assert np.array_equal(b.uniform("f", (2, 3, 5)).ravel(), b.uniform("f", 40)[:30])
    assert b.uniform("f", (0, 5)).shape == (0, 5)
    assert b.normal("g", ()).shape == ()


def test_draws_at_indices_are_those_elements_of_the_full_draw(monkeypatch):
    b = Bits("case", 1)
    monkeypatch.setattr(rng, "CHUNK", 7)  # elements in several chunks of the full draw
    at = np.array([999, 0, 7, 8, 500, 7])
    assert np.array_equal(b.uniform("f", (10, 100), at=at), b.uniform("f", 1000)[at])
    assert np.array_equal(b.signs("s", 1000, at=at), b.signs("s", 1000)[at])
    assert b.uniform("f", 5, at=np.zeros(0, np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="index 1000 outside the draw's 1000 elements"):
        b.uniform("f", 1000, at=np.array([3, 1000]))
    with pytest.raises(TypeError, match="1-D integer array"):
        b.uniform("f", 10, at=np.array([0.5]))


def test_signs_are_minus_one_where_the_half_mask_is_true():
    b = Bits("case", 1)
    mask, signs = b.choice_mask("s", 4000, 0.5), b.signs("s", 4000)
    assert np.array_equal(signs, np.where(mask, -1.0, 1.0))
    assert 1800 < np.count_nonzero(mask) < 2200


def test_chunking_does_not_change_results(monkeypatch):
    ref = _all_draws(Bits("chunk", 2), 1001)
    monkeypatch.setattr(rng, "CHUNK", 7)
    for x, y in zip(ref, _all_draws(Bits("chunk", 2), 1001), strict=True):
        assert np.array_equal(x, y)


def test_different_seed_key_stream_differ():
    base = Bits("case", 1).uint64("s", 64)
    for other in (
        Bits("case", 2).uint64("s", 64),
        Bits("case2", 1).uint64("s", 64),
        Bits("case", 1).uint64("t", 64),
    ):
        assert not np.any(other == base)


def test_uniform_statistics():
    u = Bits("stat", 0).uniform("u", 200_000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    k = u * 2.0**53
    assert np.array_equal(k, np.floor(k))  # on the 2**-53 grid


def test_normal_statistics():
    g = Bits("stat", 0).normal("g", 200_000)
    assert g.dtype == np.float64
    assert abs(g.mean()) < 0.01 and abs(g.var() - 1.0) < 0.02
    assert np.abs(g).max() < 6.0 and np.abs(g).max() > 3.5
    assert abs(np.mean(np.abs(g) < 1.0) - 0.6827) < 0.01
    k = g * 2.0**32
    assert np.array_equal(k, np.floor(k))


@pytest.mark.parametrize("low,high", [(0, 1), (0, 7), (-3, 4), (-(2**63), 2**63), (5, 2**40 + 5)])
def test_integers_range(low, high):
    x = Bits("stat", 0).integers("i", 50_000, low, high)
    assert x.dtype == np.int64 and x.min() >= low and x.max() < high
    if high - low <= 7:
        counts = np.bincount(x - low, minlength=high - low)
        assert counts.min() > 0.9 * 50_000 / (high - low)
    else:
        mid = (low + high) / 2
        assert abs(np.mean(x < mid) - 0.5) < 0.02


def test_integers_rejects_bad_range():
    b = Bits("k", 0)
    for low, high in [(3, 3), (4, 3), (-(2**63) - 1, 0), (0, 2**63 + 1)]:
        with pytest.raises(ValueError):
            b.integers("i", 3, low, high)


@pytest.mark.parametrize("p", [0.0, 0.01, 0.3, 0.5, 1.0])
def test_choice_mask_rate(p):
    m = Bits("stat", 0).choice_mask("c", 100_000, p)
    assert m.dtype == np.bool_
    assert abs(m.mean() - p) < 0.005
    if p in (0.0, 1.0):
        assert m.all() == (p == 1.0) and m.any() == (p == 1.0)


def test_bits_runtime_warnings_are_not_raised():
    with np.errstate(all="raise"):
        _all_draws(Bits("warn", 0), 100)


# ---- data sets: generic contract ----------------------------------------------------------------


@pytest.mark.parametrize("fa,fb", PAIRS)
@pytest.mark.parametrize("name", NAMES)
def test_dataset_shapes_dtype_finite(name, fa, fb):
    ds = get_dataset(name)
    for M, N, K in [(3, 5, 7), (0, 4, 6), (5, 0, 6), (4, 3, 0), (2, 3, 1), (1, 1, 1), (17, 9, 64)]:
        a, b = ds.make(Bits("shape", 1), M, N, K, fa, fb)
        assert a.shape == (M, K) and b.shape == (K, N)
        assert a.dtype == np.float64 and b.dtype == np.float64
        assert np.isfinite(a).all() and np.isfinite(b).all()
        if name != "saturate":
            assert np.all(np.abs(a) <= get_format(fa).max) and np.all(
                np.abs(b) <= get_format(fb).max
            )


@pytest.mark.parametrize("name", NAMES)
def test_a_ignores_n_and_b_ignores_m(name):
    ds = get_dataset(name)
    a1, b1 = ds.make(Bits("ind", 3), 4, 6, 9, "e4m3fn", "e5m2")
    a2, _ = ds.make(Bits("ind", 3), 4, 2, 9, "e4m3fn", "e4m3fn")
    _, b2 = ds.make(Bits("ind", 3), 1, 6, 9, "e5m2", "e5m2")
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)


class _Perturbed(Bits):
    """Bits whose streams starting with ``prefix`` give other values."""

    def __init__(self, key, seed, prefix):
        super().__init__(key, seed)
        self.prefix = prefix

    def _key(self, stream):
        return super()._key(stream + "!" if stream.startswith(self.prefix) else stream)


@pytest.mark.parametrize("name", NAMES)
def test_a_and_b_read_distinct_streams(name):
    """A depends only on streams '<name>.a*', B only on '<name>.b*' (zero also on 'zero.k')."""
    a0, b0 = get_dataset(name).make(Bits("spy", 0), 6, 5, 16)
    a1, b1 = get_dataset(name).make(_Perturbed("spy", 0, name + ".a"), 6, 5, 16)
    a2, b2 = get_dataset(name).make(_Perturbed("spy", 0, name + ".b"), 6, 5, 16)
    assert np.array_equal(b0, b1) and not np.array_equal(a0, a1)
    assert np.array_equal(a0, a2) and not np.array_equal(b0, b2)
    a3, b3 = get_dataset(name).make(_Perturbed("spy", 0, ""), 6, 5, 16)
    assert not np.array_equal(a0, a3) and not np.array_equal(b0, b3)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    M=st.integers(0, 6),
    N=st.integers(0, 6),
    K=st.integers(0, 9),
    seed=st.integers(0, 2**32),
    fa=st.sampled_from(["e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz"]),
)
def test_dataset_any_small_shape(name, M, N, K, seed, fa):
    a, b = get_dataset(name).make(Bits("hyp", seed), M, N, K, fa, "e5m2")
    assert a.shape == (M, K) and b.shape == (K, N)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    for v, f in ((a, fa), (b, "e5m2")):
        assert np.isfinite(decode(encode(v, f, "saturate"), f)).all()


def test_get_dataset_unknown_name():
    with pytest.raises(ValueError) as e:
        get_dataset("nosuch")
    msg = str(e.value)
    assert "nosuch" in msg and all(n in msg for n in NAMES)


def test_registry_entries():
    assert NAMES == [
        "zero",
        "maxexp",
        "onebig",
        "range",
        "mixzero",
        "signed",
        "gauss",
        "outlier",
        "rowscale",
        "saturate",
        "subnormal",
    ]
    for name, ds in DATASETS.items():
        assert ds.name == name and name == name.lower() and ds.description
        assert "\n" not in ds.description


def test_negative_dimension_rejected():
    with pytest.raises(ValueError):
        get_dataset("gauss").make(Bits("k", 0), -1, 2, 3)


# ---- data sets: documented properties -----------------------------------------------------------


def _q(v, fmt):
    return decode(encode(v, fmt, "saturate"), fmt)


@pytest.mark.parametrize("fa,fb", PAIRS)
def test_zero_products(fa, fb):
    for M, N, K in [(8, 9, 64), (3, 4, 1), (2, 2, 2)]:
        a, b = get_dataset("zero").make(Bits("z", 0), M, N, K, fa, fb)
        qa, qb = _q(a, fa), _q(b, fb)
        assert np.all(qa[:, :, None] * qb[None, :, :] == 0)
        assert np.all(a[:, :, None] * b[None, :, :] == 0)
    assert np.count_nonzero(qa) + np.count_nonzero(qb) > 0
    a, b = get_dataset("zero").make(Bits("z", 0), 8, 9, 64, fa, fb)
    assert 0.2 < np.mean(a != 0) < 0.8 and 0.2 < np.mean(b != 0) < 0.8


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2", "e4m3fnuz"])
def test_maxexp_top_binades(fmt):
    f = get_format(fmt)
    a, b = get_dataset("maxexp").make(Bits("m", 0), 16, 16, 64, fmt, fmt)
    for v in (a, b):
        assert np.all(np.abs(v) >= 2.0 ** (f.emax - 2)) and np.all(np.abs(v) <= f.max)
        assert 0.3 < np.mean(v < 0) < 0.7


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_onebig_one_large_term_per_row(fmt):
    f = get_format(fmt)
    a, b = get_dataset("onebig").make(Bits("o", 0), 32, 4, 128, fmt, fmt)
    big = np.abs(_q(a, fmt)) >= 2.0**f.emax
    assert np.all(big.sum(axis=1) == 1)
    assert len(set(np.argmax(big, axis=1).tolist())) > 10  # random position
    small = np.abs(a[~big])
    assert small.max() < 2.0 ** (f.emax - 10) and small.min() > 0
    assert np.all((np.abs(b) >= 1) & (np.abs(b) < 2))
    a, _ = get_dataset("onebig").make(Bits("o", 0), 3, 4, 1, fmt, fmt)
    assert np.all(np.abs(a) >= 2.0**f.emax)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_range_covers_all_exponents(fmt):
    f = get_format(fmt)
    a, _ = get_dataset("range").make(Bits("r", 0), 64, 1, 64, fmt, fmt)
    e = np.frexp(np.abs(a))[1] - 1
    assert set(np.unique(e).tolist()) == set(range(f.emin - f.man_bits, f.emax + 1))
    assert np.any(np.abs(_q(a, fmt)) < f.min_normal)


def test_mixzero_half_zero():
    a, b = get_dataset("mixzero").make(Bits("mz", 0), 64, 64, 64)
    for v in (a, b):
        assert 0.45 < np.mean(v == 0) < 0.55
        assert np.any(np.signbit(v[v == 0]))  # both signs of zero
        assert np.all(np.abs(v[v != 0]) > 0)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_signed_cancellation(fmt):
    f = get_format(fmt)
    a, b = get_dataset("signed").make(Bits("s", 0), 32, 16, 96, fmt, fmt)
    qa, qb = _q(a, fmt), _q(b, fmt)
    assert 0.3 < np.mean(a < 0) < 0.7
    assert np.abs(a).max() > 2.0 ** (f.emax - 1) and np.abs(a).min() < 2.0 ** (
        (f.emin + f.emax) // 2 + 1
    )
    assert np.array_equal(b[1::2], b[0::2])
    assert 0.3 < np.mean(a[:, 1::2] == -a[:, 0::2]) < 0.7
    exact = qa @ qb  # float64 exact here: few terms of <= 8 significant bits within 2**32
    bound = np.abs(qa) @ np.abs(qb)
    assert np.median(np.abs(exact) / bound) < 0.3


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2", "e4m3fnuz"])
def test_gauss_uses_range(fmt):
    f = get_format(fmt)
    a, b = get_dataset("gauss").make(Bits("g", 0), 128, 128, 128, fmt, fmt)
    sigma = 2.0 ** (f.emax - 2)
    for v in (a, b):
        assert abs(v.std() / sigma - 1) < 0.05 and abs(v.mean()) < 0.05 * sigma
        assert f.max / 4 < np.abs(v).max() < f.max


def test_outlier_columns_dominate():
    K = 512
    a, _ = get_dataset("outlier").make(Bits("out", 0), 64, 8, K)
    col = np.abs(a).max(axis=0)
    order = np.argsort(col)[::-1]
    n_out = K // 256
    assert col[order[n_out - 1]] > 20 * col[order[n_out]]  # a clear gap after the outliers
    ratio = np.abs(a[:, order[:n_out]]).mean() / np.abs(a[:, order[n_out:]]).mean()
    assert 50 <= ratio < 100
    assert np.abs(a).max() <= get_format("e4m3fn").max
    a1, _ = get_dataset("outlier").make(Bits("out", 0), 5, 2, 1)
    assert a1.shape == (5, 1)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_rowscale_rows_span_binades(fmt):
    a, _ = get_dataset("rowscale").make(Bits("rs", 0), 64, 4, 256, fmt, fmt)
    amax = np.abs(a).max(axis=1)
    assert np.log2(amax.max() / amax.min()) >= 10
    assert np.abs(a).max() <= get_format(fmt).max


@pytest.mark.parametrize("fa,fb", PAIRS)
def test_saturate_exceeds_max(fa, fb):
    for M, N, K in [(3, 5, 7), (2, 2, 1), (32, 32, 64)]:
        a, b = get_dataset("saturate").make(Bits("sat", 0), M, N, K, fa, fb)
        for v, fmt, axis in ((a, fa, 1), (b, fb, 0)):
            f = get_format(fmt)
            over = np.abs(v) > f.max
            assert np.all(over.any(axis=axis))  # at least one per row of A / column of B
            assert np.all(np.abs(v) < 4.1 * f.max)
            assert np.all(np.abs(_q(v, fmt)[over]) == f.max)
    assert 0.1 < np.mean(np.abs(a) > get_format(fa).max) < 0.2


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz"])
def test_subnormal_values(fmt):
    f = get_format(fmt)
    a, b = get_dataset("subnormal").make(Bits("sub", 0), 32, 32, 32, fmt, fmt)
    for v in (a, b):
        q = _q(v, fmt)
        nz = q[q != 0]
        assert np.all(np.abs(nz) < f.min_normal) and np.all(np.abs(nz) >= f.min_subnormal)
        assert 0.5 < nz.size / q.size < 0.9 and np.mean(v == 0) > 0.15
        assert len(np.unique(np.abs(nz))) == 2**f.man_bits - 1  # every subnormal magnitude


# ---- layer-level helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_activations_and_weights(name):
    bits = Bits("layer", 5)
    for fmt in ("e4m3fn", "e5m2"):
        x = make_activations(bits, 6, 10, name, fmt)
        w = make_weights(bits, 4, 10, name, fmt)
        a, b = get_dataset(name).make(bits, 6, 4, 10, fmt, fmt)
        assert x.shape == (6, 10) and w.shape == (4, 10) and w.flags.c_contiguous
        assert np.array_equal(x, np.clip(a, -ACT_MAX, ACT_MAX)) and np.array_equal(w, b.T)
        assert np.all(np.abs(x) <= ACT_MAX)
        assert np.isfinite(x.astype(np.float16)).all()
    assert make_activations(bits, 0, 3, name).shape == (0, 3)


def test_unknown_name_in_layer_helpers():
    with pytest.raises(ValueError, match="nosuch"):
        make_activations(Bits("k", 0), 2, 2, "nosuch")


def test_pin_digest_count():
    assert len(PINNED) == 5 + 2 * (len(DATASETS) + 1) and all(len(v) == 64 for v in PINNED.values())
