"""The golden store (``golden/store.py``, ``python -m golden``, ``conformance.plugin.case_data``)
refuses every kind of damage with a :class:`StoreError` / a ``FAIL`` line naming the file and
the case, never a silent pass and never a raw NumPy or zipfile traceback.

One smoke store is generated per module (``python -m golden generate --grid smoke``) into a
temporary directory; every test works on its own copy of that tree.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import golden.store as gs
from conformance import plugin
from conformance.matrix import grid, grid_names
from golden.__main__ import generate, verify
from golden.cases import Case, build
from golden.store import Store, StoreError, output_hash, write_npz

ROOT = Path(__file__).resolve().parents[1]
SMOKE = grid("smoke")


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A fresh smoke store, generated once per module through the command line."""
    root = tmp_path_factory.mktemp("golden") / "pristine"
    r = subprocess.run(
        [sys.executable, "-m", "golden", "generate", "--grid", "smoke", "--root", str(root),
         "--jobs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "manifest.json").is_file()
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """This test's own copy of the pristine store."""
    dst = tmp_path / "golden"
    shutil.copytree(pristine, dst)
    return dst


def read_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def write_manifest(root: Path, m: dict) -> None:
    gs.write_manifest(root / "manifest.json", m)


def stored_ids(root: Path) -> list[str]:
    return sorted(cid for cid, e in read_manifest(root)["cases"].items() if e["kind"] == "stored")


def pick(root: Path, pred=lambda c: True) -> tuple[str, Path]:
    """A stored case id satisfying ``pred`` and its file."""
    m = read_manifest(root)
    for cid in stored_ids(root):
        if pred(Case.from_id(cid)):
            return cid, root / m["cases"][cid]["file"]
    raise AssertionError("no stored smoke case fits")


def rehash(root: Path, cid: str) -> None:
    """Make the manifest's sha256 agree with the (edited) file, so only content checks remain."""
    m = read_manifest(root)
    e = m["cases"][cid]
    e["sha256"] = hashlib.sha256((root / e["file"]).read_bytes()).hexdigest()
    write_manifest(root, m)


def members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def run_verify(root: Path, capsys) -> tuple[int, list[str], str]:
    rc = verify(root, jobs=1)
    out = capsys.readouterr().out
    return rc, [ln for ln in out.splitlines() if ln.startswith("FAIL ")], out


def assert_verify_fails(root: Path, capsys, *needles: str, summary: bool = True) -> list[str]:
    """verify returns 1 and prints a FAIL line holding every needle (and its FAILED summary)."""
    rc, fails, out = run_verify(root, capsys)
    assert rc == 1, out
    assert any(all(n in ln for n in needles) for ln in fails), (
        f"no FAIL line names all of {needles}:\n{out}")
    if summary:
        assert out.rstrip().endswith("FAILED"), out
    return fails


def assert_load_fails(root: Path, cid: str, *needles: str) -> str:
    """Store(root).load(case) raises StoreError naming every needle (a file, the case, ...)."""
    with pytest.raises(StoreError) as ei:
        Store(root).load(Case.from_id(cid))
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in StoreError message: {msg}"
    return msg


def flip_middle_bit(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0x10
    path.write_bytes(bytes(b))


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- 1-5: damaged files and manifest entries --------------------------------------------------


def test_flipped_bit_is_refused(root, capsys):
    cid, path = pick(root)
    flip_middle_bit(path)
    assert_load_fails(root, cid, str(path), cid, "sha256")
    assert_verify_fails(root, capsys, str(path), cid)


def test_truncated_file_is_refused(root, capsys):
    cid, path = pick(root)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    assert_load_fails(root, cid, str(path), cid)
    assert_verify_fails(root, capsys, str(path), cid)


def test_missing_file_is_refused(root, capsys):
    cid, path = pick(root)
    path.unlink()
    msg = assert_load_fails(root, cid, str(path), cid)
    assert "missing" in msg
    assert_verify_fails(root, capsys, str(path), cid, "missing")


def test_unknown_extra_file_is_flagged_by_name(root, capsys):
    extra = root / "store" / "0123456789abcdef0123.npz"
    write_npz(extra, {"a": np.zeros((2, 2), np.uint8)})
    junk = root / "store" / "notes.txt"
    junk.write_text("not a case\n")
    fails = assert_verify_fails(root, capsys, str(extra), "unknown")
    assert any(str(junk) in ln for ln in fails), fails
    assert len(fails) == 2, fails  # the real cases are all fine
    s = Store(root)
    for cid in stored_ids(root):  # every listed case still loads
        assert s.load(Case.from_id(cid)).case.id == cid


def test_manifest_sha256_mismatch_is_refused(root, capsys):
    cid, path = pick(root)
    m = read_manifest(root)
    sha = m["cases"][cid]["sha256"]
    m["cases"][cid]["sha256"] = ("0" if sha[0] != "0" else "1") + sha[1:]
    write_manifest(root, m)
    msg = assert_load_fails(root, cid, str(path), cid)
    assert "sha256" in msg
    assert_verify_fails(root, capsys, str(path), cid)


# --- 6-7: well-formed zip, matching hash, bad content -----------------------------------------


def _non_square(c: Case) -> bool:
    return c.level == "op" and c.K != c.N and c.M > 0


def _as_uint32(arrays):
    arrays["expected"] = arrays["expected"].astype(np.uint32)


def _transpose_b(arrays):
    arrays["b_kn"] = np.ascontiguousarray(arrays["b_kn"].T)


def _drop_absdot(arrays):
    del arrays["absdot"]


def _add_member(arrays):
    arrays["junk"] = np.zeros(3, np.uint8)


@pytest.mark.parametrize(
    "alter, needles",
    [
        (_as_uint32, ("'expected'", "uint32", "uint16")),
        (_transpose_b, ("'b_kn'",)),
        (_drop_absdot, ("members", "absdot")),
        (_add_member, ("members", "junk")),
    ],
    ids=["dtype", "shape", "missing-member", "extra-member"],
)
def test_bad_member_behind_matching_hash_is_refused(root, capsys, alter, needles):
    cid, path = pick(root, lambda c: _non_square(c) and c.out in ("bf16", "fp16"))
    arrays = members(path)
    alter(arrays)
    write_npz(path, arrays)
    rehash(root, cid)
    assert_load_fails(root, cid, str(path), cid, *needles)
    assert_verify_fails(root, capsys, str(path), cid, needles[0])


def test_edited_content_behind_matching_hash_fails_verify(root, capsys):
    """Right dtypes and shapes, wrong values (one expected bit; a square B transposed): load
    cannot tell, verify's recomputation must, naming the file, the case and the member."""
    cid, path = pick(root, lambda c: c.M > 0 and c.out == "bf16")
    arrays = members(path)
    arrays["expected"] = arrays["expected"].copy()
    arrays["expected"].flat[0] ^= 1
    write_npz(path, arrays)
    rehash(root, cid)
    sq, sq_path = pick(root, lambda c: c.K == c.N and c.M > 0)
    arrays = members(sq_path)
    arrays["b_kn"] = np.ascontiguousarray(arrays["b_kn"].T)
    assert not np.array_equal(arrays["b_kn"], members(sq_path)["b_kn"])
    write_npz(sq_path, arrays)
    rehash(root, sq)
    fails = assert_verify_fails(root, capsys, str(path), cid, "expected")
    assert any(str(sq_path) in ln and sq in ln and "b_kn" in ln for ln in fails), fails


def test_pickled_object_member_is_refused(root, capsys):
    cid, path = pick(root)
    arrays = members(path)
    obj = np.empty(arrays["expected"].shape, dtype=object)
    obj[...] = 0
    arrays["expected"] = obj
    with path.open("wb") as f:
        np.savez(f, **arrays)  # allow_pickle=True: the member is a pickle
    with zipfile.ZipFile(path) as z:
        assert "expected.npy" in z.namelist()
    rehash(root, cid)
    msg = assert_load_fails(root, cid, str(path), cid)
    assert "pickle" in msg
    assert_verify_fails(root, capsys, str(path), cid)


def test_members_read_as_np_load_reads_them():
    """The store reads a member's .npy header itself (np.load's literal_eval was most of a
    small case's read): every committed file, and members with headers it does not match
    (big-endian, Fortran order, format 2.0), read as np.load reads them."""
    store = Store()
    files = sorted({e["file"] for e in store.manifest["cases"].values() if e["kind"] == "stored"})
    assert len(files) > 1000
    for name in files:
        blob = (store.root / name).read_bytes()
        got, want = gs._read_members(blob, name), members(store.root / name)
        assert got.keys() == want.keys(), name
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, (name, k)
            assert np.array_equal(got[k], want[k]) and got[k].flags.writeable, (name, k)
    odd = {"be": np.arange(6, dtype=">u2").reshape(2, 3),
           "fortran": np.asfortranarray(np.arange(6, dtype=np.uint32).reshape(2, 3)),
           "scalar": np.array(7, np.uint32), "empty": np.zeros((0, 4), np.uint8)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in odd.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, v, version=(2, 0) if k == "scalar" else None)
            zf.writestr(k + ".npy", member.getvalue())
    got = gs._read_members(buf.getvalue(), "odd.npz")
    for k, v in odd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k


def _member_data_offset(path: Path, member: str) -> int:
    """Offset in ``path`` of ``member``'s compressed data."""
    blob = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    h = info.header_offset
    assert blob[h:h + 4] == b"PK\x03\x04"
    name_len = int.from_bytes(blob[h + 26:h + 28], "little")
    extra_len = int.from_bytes(blob[h + 28:h + 30], "little")
    return h + 30 + name_len + extra_len


def _bad_deflate(path: Path) -> None:
    """The first deflate block of 'expected.npy' claims the reserved block type 3."""
    off = _member_data_offset(path, "expected.npy")
    b = bytearray(path.read_bytes())
    b[off] |= 0x07  # BFINAL=1, BTYPE=11 (reserved): zlib refuses the stream
    path.write_bytes(bytes(b))
    with pytest.raises(zlib.error), zipfile.ZipFile(path) as z:  # the damage is what we mean
        z.read("expected.npy")


def _bad_crc(path: Path) -> None:
    """'a.npy' decompresses fine but its recorded CRC-32 (local and central headers) is off."""
    b = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a.npy")
    h = info.header_offset
    b[h + 14] ^= 0x01  # local file header: crc-32 at offset 14
    c = b.index(b"PK\x01\x02")  # the first central directory entry ...
    while bytes(b[c + 46:c + 46 + len(b"a.npy")]) != b"a.npy":  # ... the one of a.npy
        c = b.index(b"PK\x01\x02", c + 4)
    b[c + 16] ^= 0x01  # central directory header: crc-32 at offset 16
    path.write_bytes(bytes(b))
    with zipfile.ZipFile(path) as z:  # the damage is what we mean: only a.npy's CRC is off
        assert z.testzip() == "a.npy"


def _halve(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a zip file at all" * 40)


DAMAGE = pytest.mark.parametrize(
    "damage", [_bad_deflate, _bad_crc, _halve, _garbage],
    ids=["bad-deflate-stream", "bad-crc", "truncated", "not-a-zip"])


@DAMAGE
def test_unreadable_file_behind_matching_hash_load(root, damage):
    """A damaged file whose manifest sha256 was regenerated (hand-edited manifest, bad merge):
    load must still end in StoreError naming file and case, never a zlib/zipfile traceback."""
    cid, path = pick(root)
    damage(path)
    rehash(root, cid)
    try:
        Store(root).load(Case.from_id(cid))
    except StoreError as exc:
        assert str(path) in str(exc) and cid in str(exc), str(exc)
    except Exception as exc:
        pytest.fail(f"load raised {type(exc).__module__}.{type(exc).__name__}: {exc} "
                    "instead of StoreError")
    else:
        pytest.fail("a damaged file loaded")


@DAMAGE
def test_unreadable_file_behind_matching_hash_verify(root, capsys, damage):
    """The same damage: verify returns 1 with a FAIL line, it does not crash."""
    cid, path = pick(root)
    damage(path)
    rehash(root, cid)
    try:
        rc = verify(root, jobs=1)
    except Exception as exc:
        pytest.fail(f"verify crashed with {type(exc).__module__}.{type(exc).__name__}: {exc} "
                    "instead of returning 1")
    out = capsys.readouterr().out
    assert rc == 1, out
    assert any(ln.startswith("FAIL ") and str(path) in ln and cid in ln
               for ln in out.splitlines()), out


# --- 8: a bad manifest, and the pytest plugin's case_data -------------------------------------


def test_manifest_not_json_is_refused(root, capsys):
    (root / "manifest.json").write_text('{"format": 1, "cases": {')
    with pytest.raises(StoreError, match="manifest.json") as ei:
        _ = Store(root).manifest
    assert str(root / "manifest.json") in str(ei.value)
    with pytest.raises(StoreError, match="manifest.json"):
        Store(root).load(SMOKE[0])
    assert_verify_fails(root, capsys, str(root / "manifest.json"), summary=False)


def test_case_data_reads_a_clean_store(root):
    s = Store(root)
    case = SMOKE[0]
    got = plugin.case_data(case, 0, s)
    ref = build(case, 0)
    assert np.array_equal(got.a, ref.a) and np.array_equal(got.expected, ref.expected,
                                                           equal_nan=True)
    # --no-golden (store None) and another seed compute the case
    for seed, store in ((0, None), (1, s)):
        data = plugin.case_data(case, seed, store)
        assert np.array_equal(data.a, build(case, seed).a)


def test_case_data_refuses_a_corrupt_stored_file(root):
    cid, path = pick(root)
    flip_middle_bit(path)
    with pytest.raises(StoreError) as ei:
        plugin.case_data(Case.from_id(cid), 0, Store(root))
    assert str(path) in str(ei.value) and cid in str(ei.value), str(ei.value)
    # another seed than the store's does not read the store
    data = plugin.case_data(Case.from_id(cid), 1, Store(root))
    assert data.seed == 1


def test_case_data_checks_a_hash_only_entry(root, capsys):
    cid, path = pick(root)
    case = Case.from_id(cid)
    m = read_manifest(root)
    m["cases"][cid].update(kind="hash", file=None,
                           sha256=output_hash(build(case, 0).expected, case.out))
    write_manifest(root, m)
    path.unlink()
    data = plugin.case_data(case, 0, Store(root))  # right hash: computed and accepted
    assert np.array_equal(data.expected, build(case, 0).expected, equal_nan=True)
    rc, fails, out = run_verify(root, capsys)
    assert rc == 0 and not fails, out

    sha = m["cases"][cid]["sha256"]
    m["cases"][cid]["sha256"] = ("0" if sha[0] != "0" else "1") + sha[1:]
    write_manifest(root, m)
    with pytest.raises(StoreError) as ei:
        plugin.case_data(case, 0, Store(root))
    msg = str(ei.value)
    assert "reference output's hash differs" in msg and cid in msg, msg
    assert str(root / "manifest.json") in msg, msg
    assert_verify_fails(root, capsys, cid, "hash differs")


def _config(golden: bool):
    opt = SimpleNamespace(grid="smoke", backend="reference", device="cpu", case=None, emulate_xpu=False,
                          golden=golden, seed=0, timing_reps=None,
                          reference_device="numpy")
    return SimpleNamespace(option=opt)


def test_plugin_configure_turns_a_bad_manifest_into_a_usage_error(root, monkeypatch):
    (root / "manifest.json").write_text("not json\n")
    monkeypatch.setattr(gs, "ROOT", root)  # the plugin reads the package's own store
    with pytest.raises(pytest.UsageError, match="manifest.json") as ei:
        plugin.configure(_config(golden=True))
    assert "--no-golden" in str(ei.value)
    cfg = _config(golden=False)  # --no-golden never reads the store
    plugin.configure(cfg)
    assert cfg._fp8_store is None


# --- 9: generation is reproducible, verify's clean verdict, stale files, usage errors ---------


def test_generate_twice_is_byte_identical(root, pristine, capsys):
    before = all_bytes(root)
    assert generate(("smoke",), 0, root, 1) == 0
    after = all_bytes(root)
    assert sorted(after) == sorted(before)
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, changed
    assert after == all_bytes(pristine)
    assert len([k for k in after if k.endswith(".npz")]) == len(SMOKE)


def test_verify_clean_store_is_ok(root, capsys):
    rc, fails, out = run_verify(root, capsys)
    assert rc == 0 and not fails, out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("golden verify:") and last.endswith(": OK"), out
    assert f"{len(SMOKE)} cases" in last, out


def test_generate_removes_stale_files(root, capsys):
    stale = root / "store" / "ffffffffffffffffffff.npz"
    write_npz(stale, {"a": np.zeros(1, np.uint8)})
    assert generate(("smoke",), 0, root, 1) == 0
    assert "1 stale files removed" in capsys.readouterr().out
    assert not stale.exists()
    rc, fails, out = run_verify(root, capsys)
    assert rc == 0 and not fails, out


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "golden", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_verify_exit_codes(root):
    r = _cli("verify", "--root", str(root), "--jobs", "1", "--grid", "smoke")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("OK")
    cid, path = pick(root)
    flip_middle_bit(path)
    r = _cli("verify", "--root", str(root), "--jobs", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert any(ln.startswith("FAIL ") and str(path) in ln and cid in ln
               for ln in r.stdout.splitlines()), r.stdout
    assert "Traceback" not in r.stderr, r.stderr


def test_cli_verify_unknown_grid_is_a_usage_error(root):
    r = _cli("verify", "--root", str(root), "--grid", "nope")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "'nope'" in r.stderr and "valid grids" in r.stderr, r.stderr
    for name in grid_names():
        assert name in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --- 10: a stored case is the computed case -----------------------------------------------------


def test_round_trip_matches_build(pristine):
    s = Store(pristine)
    assert sorted(stored_ids(pristine)) == sorted(c.id for c in SMOKE)
    for case in SMOKE:
        got, ref = s.load(case), build(case, 0)
        where = case.id
        for name in ("a", "b_kn", "scale_a", "scale_b"):
            g, r = getattr(got, name), getattr(ref, name)
            assert g.dtype == r.dtype and g.shape == r.shape, (where, name, g.dtype, g.shape,
                                                               r.dtype, r.shape)
            assert np.array_equal(g, r), (where, name)
        spec = {"[]": (), "[1]": (1,), "[M,1]": (case.M, 1), "[N]": (case.N,),
                "[1,N]": (1, case.N), "[N,1]": (case.N, 1)}
        assert got.scale_a.shape == spec[case.sa] and got.scale_b.shape == spec[case.sb], where
        if ref.bias is None:
            assert got.bias is None, where
        else:
            assert got.bias.shape == ref.bias.shape, where
            assert np.array_equal(got.bias, ref.bias, equal_nan=True), where
        assert got.expected.shape == ref.expected.shape, where
        assert np.array_equal(got.expected, ref.expected, equal_nan=True), where
        # absdot: float32 rounded upward, a bound stays a bound, within one float32 ulp
        assert got.absdot.shape == ref.absdot.shape, where
        assert np.all(got.absdot >= ref.absdot), where
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(ref.absdot == 0, got.absdot, (got.absdot - ref.absdot) / ref.absdot)
        assert np.all(rel < 2.0**-23), (where, float(rel.max(initial=0)))
        # |sa sb|: the same values (the stored one may be broadcast out to [M, N])
        g_mag, r_mag = np.broadcast_arrays(got.mag(), ref.mag())
        assert np.array_equal(g_mag, r_mag), where
        if case.level == "layer":
            assert np.array_equal(got.x, ref.x, equal_nan=True), where
            assert np.array_equal(got.weight_scale, ref.weight_scale), where
            if ref.input_scale is None:
                assert got.input_scale is None, where
            else:
                assert np.array_equal(got.input_scale, ref.input_scale), where
            assert np.allclose(got.unquantized, ref.unquantized, rtol=2.0**-23, atol=0,
                               equal_nan=True), where
