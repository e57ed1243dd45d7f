"""A declared accumulation profile checked against the backend's measured fingerprint.

A profile is a claim about a kernel's arithmetic that the bound trusts (``golden.bounds``).
The probes (``conformance.probe``) measure that arithmetic. A profile may be looser than the
measurement, never tighter: it *overclaims* when it promises

- a smaller accumulator unit roundoff than measured (fraction bits, and truncation, which
  doubles the unit: ``2**-bits`` instead of ``2**-(bits + 1)``);
- an fp32 outer accumulator every ``block`` products where the probe found none within its
  K, or found a longer block;
- round-to-nearest output (every non-exact bound allows half an output ulp for the kernel's
  own rounding) where the probe found another rounding;
- exact arithmetic where any probe found otherwise.

``conformance/test_profile.py`` applies this to the backend and device under test in every
conformance run; ``tests/test_profile_check.py`` applies it to the committed baselines.
"""

from __future__ import annotations

import json

from golden.bounds import AccumProfile

from .probe import BLOCK_K, EXACT, fingerprint

__all__ = ["check_profile", "fingerprint_tables", "CONSISTENT", "OVERCLAIMS", "UNMEASURED"]

CONSISTENT, OVERCLAIMS, UNMEASURED = "consistent", "overclaims", "unmeasured"
NEAREST = ("nearest-even", "nearest-away")


def _unit(bits, truncates) -> float:
    """Unit roundoff of an accumulator keeping ``bits`` fraction bits (0.0 for "exact")."""
    if bits == "exact":
        return 0.0
    return 2.0 ** -(bits + (0 if truncates is True else 1))


def _claim(profile: AccumProfile) -> str:
    return "exact" if profile.exact else profile.describe().split(": ", 1)[1]


def _measured(fp: dict) -> str:
    bits = fp.get("acc_bits")
    if bits == "exact":
        return "exact accumulation"
    if not isinstance(bits, int):
        return f"not measured ({bits})"
    blk = fp.get("block")
    return (f"{bits} fraction bits" + (", truncating" if fp.get("truncates") is True else "")
            + (f", blocks of {blk}" if isinstance(blk, int) else ", no block")
            + f", {fp.get('output_rounding')} output")


def check_profile(profile: AccumProfile, fp: dict) -> tuple[str, list[str]]:
    """``(status, problems)``: CONSISTENT, OVERCLAIMS (each problem names claim and
    measurement) or UNMEASURED (the probes could not run; the problem says why)."""
    bits = fp.get("acc_bits")
    if not (bits == "exact" or isinstance(bits, int)):
        return UNMEASURED, [f"accumulator not measured: {bits}"]
    if profile.exact:
        if fp.get("exact") is True:
            return CONSISTENT, []
        return OVERCLAIMS, [f"profile {profile.name!r} claims exact arithmetic; the probes "
                            f"measured {_measured(fp)}"]
    problems = []
    claimed_u = _unit(profile.frac_bits, profile.truncates)
    measured_u = _unit(bits, fp.get("truncates"))
    if claimed_u < measured_u:
        problems.append(
            f"profile {profile.name!r} claims unit roundoff {claimed_u:.3g} ({profile.frac_bits} "
            f"fraction bits{', truncating' if profile.truncates else ''}); the probe measured "
            f"{measured_u:.3g} ({bits} fraction bits"
            f"{', truncating' if fp.get('truncates') is True else ''})")
    blk = fp.get("block")
    if profile.block is not None and bits != "exact" and bits < profile.outer_frac_bits:
        if blk is None and profile.block < BLOCK_K:
            problems.append(f"profile {profile.name!r} claims an fp32 partial sum every "
                            f"{profile.block} products; the probe found no block boundary "
                            f"within K = {BLOCK_K}")
        elif isinstance(blk, int) and blk > profile.block:
            problems.append(f"profile {profile.name!r} claims blocks of {profile.block}; the "
                            f"probe measured blocks of {blk}")
    mode = fp.get("output_rounding")
    if mode not in NEAREST:
        problems.append(f"profile {profile.name!r} allows half an output ulp for the kernel's "
                        f"own rounding (round to nearest); the probe measured {mode}")
    return (OVERCLAIMS if problems else CONSISTENT), problems


def _cell(v):
    """A fingerprint value as a table cell (nested values as compact JSON)."""
    return v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)


def fingerprint_tables(adapter, backend: str, device: str, fp: dict | None = None) -> dict:
    """The report's ``fingerprint`` table (one row per probe, with what exact arithmetic
    gives) and ``profile_check`` table (the declared profile against it); ``fp``: an
    already measured fingerprint (else the probes run now)."""
    fp = fp if fp is not None else fingerprint(backend, device, adapter=adapter)
    rows = [{"probe": k, "measured": _cell(v), "exact arithmetic": _cell(EXACT.get(k))}
            for k, v in fp.items() if k not in ("backend", "device")]
    profile = adapter.profile(device)
    status, problems = check_profile(profile, fp)
    check = [{"backend": backend, "device": device, "profile": profile.name,
              "claims": _claim(profile), "measured": _measured(fp), "status": status,
              "problems": "; ".join(problems) or None}]
    return {"fingerprint": rows, "profile_check": check}
