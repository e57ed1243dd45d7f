"""``python -m golden generate [--grid G ...]`` writes or updates the golden store;
``python -m golden verify`` checks every file hash and recomputes every case.

verify exits 1 and names each mismatching file and case; 0 when all agree.

This command-line entry is the one place under golden/ that reads ``conformance.matrix``
(which cases the grids hold); the golden library itself imports neither kernel nor
conformance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import store as st

DEFAULT_GRIDS = ("smoke", "default", "full")


def _grid_cases(grids) -> dict[str, list[str]]:
    """case id -> the grids (among ``grids``) that hold it. conformance is only read here."""
    from conformance.matrix import grid  # the matrix lives with the judge; ids are plain data

    owners: dict[str, list[str]] = {}
    for g in grids:
        for c in grid(g):
            owners.setdefault(c.id, []).append(g)
    return owners


def _make(args):
    case_id, seed, root, grids = args
    return case_id, st.make_entry(st.Case.from_id(case_id), seed, Path(root), grids)


def _check(args):
    case_id, entry, seed, root = args
    return case_id, st.check_entry(case_id, entry, seed, Path(root))


def generate(grids, seed: int, root: Path, jobs: int) -> int:
    s = st.Store(root)
    old = s.manifest.get("cases", {}) if s.manifest_path.exists() else {}
    owners = _grid_cases(grids)
    cases = {}
    for cid, e in old.items():  # entries of other grids are kept as they are
        rest = sorted(set(e.get("grids", [])) - set(grids))
        if cid in owners:
            owners[cid] = sorted(set(owners[cid]) | set(rest))
        elif rest:
            cases[cid] = e | {"grids": rest}
    t0 = time.perf_counter()
    work = [(cid, seed, str(root), gs) for cid, gs in sorted(owners.items())]
    with ProcessPoolExecutor(jobs) as pool:
        for cid, entry in pool.map(_make, work, chunksize=16):
            cases[cid] = entry
    keep = {e["file"] for e in cases.values() if e.get("file")}
    removed = 0
    if s.dir.exists():
        for f in sorted(s.dir.iterdir()):
            if f"store/{f.name}" not in keep:
                f.unlink()
                removed += 1
    manifest = st.header(seed) | {"cases": cases}
    st.write_manifest(s.manifest_path, manifest)
    stored = sum(e["kind"] == "stored" for e in cases.values())
    size = sum((root / f).stat().st_size for f in keep)
    print(f"golden store: {len(cases)} cases ({stored} stored, {len(cases) - stored} hash-only), "
          f"{size / 1e6:.1f} MB in {s.dir}, {removed} stale files removed, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


def verify(root: Path, jobs: int, grids=None) -> int:
    s = st.Store(root)
    try:
        manifest = s.manifest
    except st.StoreError as exc:
        print(f"FAIL {exc}")
        print("golden verify: manifest unreadable: FAILED")
        return 1
    if not s.manifest_path.exists():
        print(f"FAIL {s.manifest_path}: missing; run `python -m golden generate`")
        print("golden verify: no manifest: FAILED")
        return 1
    seed = int(manifest.get("seed", 0))
    cases = manifest["cases"]
    if grids:
        cases = {k: v for k, v in cases.items() if set(v.get("grids", [])) & set(grids)}
    problems = []
    listed = {e["file"] for e in manifest["cases"].values() if e.get("file")}
    if s.dir.exists():
        for f in sorted(s.dir.iterdir()):
            if f"store/{f.name}" not in listed:
                problems.append(f"{f}: unknown file, not in the manifest; delete it or regenerate")
    t0 = time.perf_counter()
    work = [(cid, e, seed, str(root)) for cid, e in sorted(cases.items())]
    with ProcessPoolExecutor(jobs) as pool:
        for _cid, found in pool.map(_check, work, chunksize=16):
            problems.extend(found)
    for p in problems:
        print(f"FAIL {p}")
    stored = sum(e.get("kind") == "stored" for e in cases.values())
    verdict = "FAILED" if problems else "OK"
    print(f"golden verify: {len(cases)} cases ({stored} stored, {len(cases) - stored} "
          f"hash-only), {len(problems)} problems, {time.perf_counter() - t0:.0f} s: {verdict}")
    return 1 if problems else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write or update the store")
    g.add_argument("--grid", action="append", help=f"grid(s) to (re)generate (default: "
                   f"{', '.join(DEFAULT_GRIDS)}; llm is large: run it where there is time)")
    g.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("verify", help="check file hashes and recompute every case")
    v.add_argument("--grid", action="append", help="only cases of these grids")
    for sp in (g, v):
        sp.add_argument("--root", type=Path, default=st.ROOT, help="store root (default: golden/)")
        sp.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    from conformance.matrix import grid_names

    for name in args.grid or []:
        if name not in grid_names():
            p.error(f"--grid={name!r} is unknown; valid grids: {', '.join(grid_names())}")
    if args.cmd == "generate":
        return generate(tuple(args.grid or DEFAULT_GRIDS), args.seed, args.root, args.jobs)
    return verify(args.root, args.jobs, args.grid)


if __name__ == "__main__":
    sys.exit(main())
