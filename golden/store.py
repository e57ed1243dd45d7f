"""The golden store: versioned, hashed golden cases that runners check against without
recomputing the reference (DESIGN §7).

Layout, next to this file::

    golden/manifest.json      every case: parameters, kind, sha256, grids; versions at the top
    golden/store/<h>.npz      one file per *stored* case, raw bits only

A *stored* case's file holds, as unsigned integers only (no object arrays, loaded with
``allow_pickle=False``): the FP8 codes ``a`` [M,K] and ``b_kn`` [K,N], the float32 bits of
``scale_a`` / ``scale_b`` in the case's shapes, the bias bits, the correctly rounded
``expected`` output bits, and ``absdot`` (``sum_k |A||B|`` as float32 bits rounded upward),
from which the per-element bound of any profile follows (``golden.bounds.element_bound``).
Layer cases add ``x`` (activation bits), ``unquantized`` (float32 bits), ``weight_scale`` and
``input_scale``. Its manifest sha256 is the file's. A *hash* case (too large to keep) records
the sha256 of its expected output bits: a runner regenerates the inputs, runs the reference
and compares. Files are byte-identical on every generation: fixed zip timestamps, sorted
members, fixed compression level.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import GENERATOR_VERSION, REFERENCE_VERSION
from .cases import GROUPED_SCHEMES, Case, CaseData, CaseError, build, scale_shape
from .codecs import decode, encode

__all__ = [
    "StoreError",
    "Store",
    "STORE_FORMAT",
    "SIZE_LIMIT",
    "case_payload_bytes",
    "output_hash",
    "to_arrays",
]

STORE_FORMAT = 1
SIZE_LIMIT = 40_000
"""Largest raw payload (bytes) of a case kept as a file; larger cases are hash-only."""
STORED_GRIDS = ("smoke", "default")
# Weight-only and block cases (GROUPED_SCHEMES) have no FP8 activation codes / [M,1]-style
# scales for the file layout below; they are kept as output hashes (inputs regenerate from the
# id in milliseconds).
ROOT = Path(__file__).resolve().parent
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class StoreError(Exception):
    """A bad store: names the file and the case, and says how to fix it."""


def output_hash(expected: np.ndarray, out_fmt: str) -> str:
    """sha256 of the expected output's bits (C order) and shape."""
    bits = np.ascontiguousarray(encode(expected, out_fmt))
    h = hashlib.sha256(f"{out_fmt}:{bits.shape}".encode())
    h.update(bits.tobytes())
    return h.hexdigest()


def case_payload_bytes(case: Case) -> int:
    """Raw bytes a stored file of ``case`` holds (before compression)."""
    ob = {"bf16": 2, "fp16": 2, "fp32": 4}[case.out]
    n = case.M * case.K + case.K * case.N + case.M * case.N * (ob + 4) + 4 * (case.M + case.N)
    if case.level == "layer":
        n += case.M * case.K * 2 + case.M * case.N * 4 + 4 * case.N
    return n


def _f32_bits(x) -> np.ndarray:
    """float32 bits, shape kept (0-d too: ascontiguousarray would make a [] scale [1])."""
    return np.array(x, np.float32, order="C").view(np.uint32)


def _f32_up(x: np.ndarray) -> np.ndarray:
    """float32 values not below ``x`` (float64): a bound stays a bound."""
    f = x.astype(np.float32)
    return np.where(f.astype(np.float64) < x, np.nextafter(f, np.float32(np.inf)), f)


def to_arrays(data: CaseData) -> dict[str, np.ndarray]:
    """The raw-bit arrays a stored file holds for ``data``."""
    c = data.case
    arrays = {
        "a": np.ascontiguousarray(data.a, np.uint8),
        "b_kn": np.ascontiguousarray(data.b_kn, np.uint8),
        "scale_a": _f32_bits(data.scale_a),
        "scale_b": _f32_bits(data.scale_b),
        "expected": np.ascontiguousarray(encode(data.expected, c.out)),
        "absdot": _f32_bits(_f32_up(data.absdot)),
    }
    if data.bias is not None:
        arrays["bias"] = np.ascontiguousarray(data.bias_bits)
    if c.level == "layer":
        arrays["x"] = np.ascontiguousarray(encode(data.x, c.x))
        arrays["unquantized"] = _f32_bits(data.unquantized)
        arrays["weight_scale"] = _f32_bits(data.weight_scale)
        if data.input_scale is not None:
            arrays["input_scale"] = _f32_bits(data.input_scale)
    return arrays


def _expected_layout(case: Case, arrays_scale_shapes) -> dict[str, tuple[np.dtype, tuple]]:
    """dtype and shape every member of ``case``'s file must have."""
    M, N, K = case.M, case.N, case.K
    out_dt = np.uint32 if case.out == "fp32" else np.uint16
    sa_shape, sb_shape = arrays_scale_shapes
    lay = {
        "a": (np.uint8, (M, K)),
        "b_kn": (np.uint8, (K, N)),
        "scale_a": (np.uint32, sa_shape),
        "scale_b": (np.uint32, sb_shape),
        "expected": (out_dt, (M, N)),
        "absdot": (np.uint32, (M, N)),
    }
    if case.bias is not None:
        lay["bias"] = (np.uint32 if case.bias == "fp32" else np.uint16, (N,))
    if case.level == "layer":
        lay["x"] = (np.uint16, (M, K))
        lay["unquantized"] = (np.uint32, (M, N))
        lay["weight_scale"] = (np.uint32, None)
        if case.a == "static":
            lay["input_scale"] = (np.uint32, (1,))
    return lay


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """Write ``arrays`` as a byte-reproducible .npz (sorted members, fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name], order="C"),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=6)
    blob = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


class Store:
    """A golden store rooted at ``root`` (default: the package's own)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else ROOT
        self.manifest_path = self.root / "manifest.json"
        self.dir = self.root / "store"
        self._manifest = None

    # -- manifest -----------------------------------------------------------------------------
    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict:
        p = self.manifest_path
        if not p.exists():
            return {"format": STORE_FORMAT, "cases": {}}
        try:
            m = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{p}: not valid JSON ({exc}); restore it from git or run "
                             "`python -m golden generate`") from None
        if not isinstance(m, dict) or not isinstance(m.get("cases"), dict):
            raise StoreError(f"{p}: no 'cases' object; restore it from git or regenerate")
        if m.get("format") != STORE_FORMAT:
            raise StoreError(f"{p}: store format {m.get('format')!r}, this code reads "
                             f"{STORE_FORMAT}; regenerate with `python -m golden generate`")
        return m

    def entry(self, case_id: str) -> dict | None:
        return self.manifest["cases"].get(case_id)

    def covers(self, case_id: str) -> bool:
        return case_id in self.manifest["cases"]

    @property
    def seed(self) -> int:
        return int(self.manifest.get("seed", 0))

    # -- loading ------------------------------------------------------------------------------
    def load(self, case: Case) -> CaseData:
        """The stored case as :class:`CaseData`, checked: file hash, members, dtypes, shapes."""
        e = self.entry(case.id)
        if e is None or e.get("kind") != "stored":
            raise StoreError(f"case {case.id}: not stored in {self.manifest_path}")
        path = os.path.join(self.root, e["file"])  # str paths: pathlib's cost a small read's 10%
        where = f"{path} (case {case.id})"
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            raise StoreError(f"{where}: file missing; run `python -m golden generate`") from None
        if hashlib.sha256(blob).hexdigest() != e["sha256"]:
            raise StoreError(f"{where}: sha256 differs from the manifest (corrupt or edited "
                             "file); restore it from git or regenerate")
        arrays = _read_members(blob, where)
        lay = _expected_layout(case, (scale_shape(case.sa, case.M, case.N, case.K),
                                      scale_shape(case.sb, case.M, case.N, case.K)))
        if set(arrays) != set(lay):
            raise StoreError(f"{where}: members {sorted(arrays)} != expected {sorted(lay)}")
        for name, (dt, shape) in lay.items():
            arr = arrays[name]
            if arr.dtype != np.dtype(dt) or (shape is not None and arr.shape != shape):
                raise StoreError(f"{where}: member {name!r} is {arr.dtype}{list(arr.shape)}, "
                                 f"expected {np.dtype(dt)}{'[...]' if shape is None else list(shape)}")
        return _to_case_data(case, self.seed, arrays)


def _read_members(blob: bytes, where: str) -> dict[str, np.ndarray]:
    try:
        raws = _deflated_members(blob)
        if raws is None:  # not laid out as write_npz lays it out: zipfile reads it, or says why
            if not zipfile.is_zipfile(io.BytesIO(blob)):
                raise StoreError(f"{where}: not a zip (.npz) file; restore it from git or "
                                 "regenerate")
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                raws = {info.filename: zf.read(info) for info in zf.infolist()}
        return {name.removesuffix(".npy"): _npy_array(raw) for name, raw in raws.items()}
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle: refused
            raise StoreError(f"{where}: holds an object array, unreadable without pickle "
                             f"({exc}); a golden file holds raw bits only, regenerate it") from None
        raise StoreError(f"{where}: a member is not a valid .npy array ({exc}); "
                         "restore it from git or regenerate") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise StoreError(f"{where}: not a readable .npz ({type(exc).__name__}: {exc}); "
                         "restore it from git or regenerate") from None


def _deflated_members(blob: bytes) -> dict[str, bytes] | None:
    """``{name: bytes}`` of a zip laid out as :func:`write_npz` writes it (local headers back
    to back, deflated, sizes and CRC in each header, then the central directory), read off the
    local headers: zipfile's per-member objects cost more than a small member's inflate.
    None for any other layout, a bad CRC or a bad stream; the caller then uses zipfile."""
    out, pos = {}, 0
    while blob.startswith(b"PK\x03\x04", pos):
        flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL.unpack_from(blob, pos + 6)
        if flags & 0x08 or method != zipfile.ZIP_DEFLATED:
            return None
        start = pos + 30 + nlen + xlen
        try:
            data = zlib.decompress(blob[start:start + csize], -15)
        except zlib.error:
            return None
        if len(data) != usize or zlib.crc32(data) != crc:
            return None
        out[blob[pos + 30:pos + 30 + nlen].decode("utf-8", "replace")] = data
        pos = start + csize
    return out if out and blob.startswith(b"PK\x01\x02", pos) else None


_LOCAL = struct.Struct("<HHHHIIIHH")  # a local file header after its signature and version
# The header ``np.lib.format.write_array`` gives an unsigned C-order array (format 1.0).
_NPY_HEADER = re.compile(rb"\{'descr': '([<|]u[1248])', 'fortran_order': False, "
                         rb"'shape': \(((?:\d+(?:, \d+)*,?)?)\), \} *\n")


def _npy_array(raw: bytes) -> np.ndarray:
    """One .npy member. A header as ``write_array`` writes the store's members is matched
    directly (``np.load`` parses every header with ``ast.literal_eval``: 0.07 ms a member,
    most of a small case's read); any other member goes through ``np.lib.format``, with its
    checks and errors (``allow_pickle=False``)."""
    hlen = int.from_bytes(raw[8:10], "little")
    layout = _npy_layout(raw[:10 + hlen]) if raw[:8] == b"\x93NUMPY\x01\x00" else None
    if layout is not None:
        dtype, shape, size = layout
        body = bytearray(raw[10 + hlen:])  # writeable, as np.load's arrays are
        if len(body) == size:
            return np.frombuffer(body, dtype).reshape(shape)
    return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


@functools.lru_cache(maxsize=1024)
def _npy_layout(head: bytes) -> tuple[np.dtype, tuple, int] | None:
    """(dtype, shape, bytes) a ``write_array`` header names, or None for another header
    (cached: the store's members share a few hundred headers)."""
    m = _NPY_HEADER.fullmatch(head, 10)
    if m is None:
        return None
    dtype = np.dtype(m[1].decode())
    shape = tuple(int(d) for d in m[2].split(b",") if d.strip())
    return dtype, shape, dtype.itemsize * math.prod(shape)


def _f32(bits: np.ndarray) -> np.ndarray:
    return bits.view(np.float32)


def _to_case_data(case: Case, seed: int, z: dict) -> CaseData:
    sa, sb = _f32(z["scale_a"]).copy(), _f32(z["scale_b"]).copy()
    bias = decode(z["bias"], case.bias) if "bias" in z else None
    data = CaseData(
        case, seed, z["a"], z["b_kn"], sa, sb, bias,
        expected=decode(z["expected"], case.out),
        absdot=_f32(z["absdot"]).astype(np.float64),
        scale_mag=None,  # CaseData.mag(): |sa sb| from the scales
    )
    if case.level == "layer":
        data.x = decode(z["x"], case.x)
        data.unquantized = _f32(z["unquantized"]).astype(np.float64)
        data.weight_scale = _f32(z["weight_scale"]).copy()
        data.input_scale = _f32(z["input_scale"]).copy() if "input_scale" in z else None
    return data


# --- generation and verification (used by python -m golden) -----------------------------------


def file_name(case: Case) -> str:
    return "store/" + hashlib.sha256(case.id.encode()).hexdigest()[:20] + ".npz"


def make_entry(case: Case, seed: int, root: Path, grids: list[str]) -> dict:
    """Build the case, write its file if it is kept, and return its manifest entry."""
    keep = (any(g in STORED_GRIDS for g in grids) and case_payload_bytes(case) <= SIZE_LIMIT
            and case.a not in GROUPED_SCHEMES)
    data = build(case, seed, with_bound=keep)
    entry = {"grids": sorted(grids), "params": asdict(case)}
    if keep:
        name = file_name(case)
        blob = write_npz(root / name, to_arrays(data))
        entry.update(kind="stored", file=name, sha256=hashlib.sha256(blob).hexdigest())
    else:
        entry.update(kind="hash", file=None, sha256=output_hash(data.expected, case.out))
    return entry


def check_entry(case_id: str, entry: dict, seed: int, root: Path) -> list[str]:
    """Problems with one manifest entry, recomputing the case with the current reference."""
    try:
        case = Case.from_id(case_id)
    except CaseError as exc:
        return [f"manifest case {case_id!r}: {exc}"]
    if entry.get("params") != asdict(case):
        return [f"manifest case {case_id}: params do not match its id"]
    try:
        data = build(case, seed, with_bound=entry.get("kind") != "hash")
    except Exception as exc:  # one broken case is one problem, never the end of verify
        return [f"case {case_id}: the reference raised {type(exc).__name__}: {exc}"]
    if entry.get("kind") == "hash":
        if output_hash(data.expected, case.out) != entry.get("sha256"):
            return [f"case {case_id}: reference output hash differs from the manifest "
                    "(the reference changed; bump REFERENCE_VERSION and regenerate if meant)"]
        return []
    try:
        got = Store(root)
        got._manifest = {"cases": {case_id: entry}, "seed": seed}
        stored = to_arrays(got.load(case))
    except StoreError as exc:
        return [str(exc)]
    except Exception as exc:  # anything else unreadable is still a named problem
        return [f"{root / str(entry.get('file'))} (case {case_id}): unreadable "
                f"({type(exc).__name__}: {exc})"]
    fresh = to_arrays(data)
    bad = [k for k in fresh if not np.array_equal(fresh[k], stored[k])]
    if bad:
        return [f"{root / entry['file']} (case {case_id}): members {bad} differ from a "
                "fresh computation (generator or reference changed)"]
    return []


def header(seed: int) -> dict:
    return {"format": STORE_FORMAT, "generator_version": GENERATOR_VERSION,
            "reference_version": REFERENCE_VERSION, "numpy_version": np.__version__,
            "seed": seed, "size_limit_bytes": SIZE_LIMIT, "stored_grids": list(STORED_GRIDS)}


def write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
