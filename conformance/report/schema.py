"""The tolerance report's JSON schema (versioned), its float encoding, loading and validation.

A report is one JSON object::

    {"schema": "fp8-conformance-tolerance", "schema_version": 1,
     "envelope": {...}, "records": [{...}, ...], "tables": {...}}

``tables`` is optional: named lists of row objects. Whole-grid runs add ``fingerprint`` and
``profile_check`` (``conformance/profile_check.py``); ``vllm:<Class>`` runs add
``vllm_selection`` and ``vllm_capability`` (``conformance/vllm_tables.py``).

The tables below are the documentation: ``python -m conformance.report schema`` prints them as
Markdown (``docs/tolerance-schema.md`` is that output, checked by a test). JSON has no
infinities or NaN, so non-finite floats are written as the strings ``"inf"``, ``"-inf"`` and
``"nan"`` and read back as floats. A change that removes or retypes a field bumps
``SCHEMA_VERSION``; readers refuse versions they do not know.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ENVELOPE_FIELDS", "LATER_ENVELOPE_FIELDS", "RECORD_FIELDS",
           "METRIC_FIELDS", "VERDICTS", "ReportError", "encode", "decode", "validate", "load", "dump",
           "markdown"]

SCHEMA = "fp8-conformance-tolerance"
SCHEMA_VERSION = 1
VERDICTS = ("pass", "fail", "skip", "crashed", "error")

_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))

# name: (allowed types, description)
ENVELOPE_FIELDS = {
    "backend": (str, "kernel backend under test (`--backend`)"),
    "kernel": (str, "what the backend calls, e.g. `torch._scaled_mm`"),
    "emulated": (bool, "true when the kernel is a CPU emulation of another device's contract"),
    "profile": (str, "declared accumulation profile the bounds come from"),
    "device": (str, "`cpu`, `cuda` or `xpu` (`--device`)"),
    "device_name": (str, "device model (GPU name, or the CPU's model name)"),
    "driver": (_OPT_STR, "device driver version, null where none applies or it is unknown"),
    "runtime": (_OPT_STR, "device runtime: CUDA/ROCm/XPU runtime, or oneDNN on cpu; null if unknown"),
    "versions": (dict, "python, numpy, ml_dtypes, torch, vllm, pytest, xdist, golden reference "
                       "(null where not installed)"),
    "git": (dict, "`revision` (null outside a checkout) and `dirty` (uncommitted changes)"),
    "grid": (str, "case grid (`--grid`), or `case` for a single `--case` run"),
    "seed": (int, "input seed (`--seed`)"),
    "shard": (_OPT_STR, "`i/n` for one shard of a run (`--shard`), null for a whole run"),
    "merged_from": (list, "shards this report was merged from (`report merge`), else empty"),
    "golden": (bool, "whether inputs came from the golden store where it covers the case"),
    "timing_reps": (int, "timed calls per case (median taken, after one warm-up call)"),
    "command": (str, "command line of the run"),
    "date": (str, "UTC start time, ISO 8601"),
    "counts": (dict, "records per verdict"),
    "peak_tflops": (_OPT_NUM, "published dense FP8 tensor-core peak of `device_name` for e4m3 x e4m3 "
                              "in TFLOP/s (`kernel/peaks.py`: a datasheet figure, not a "
                              "measurement); null where none is known, e.g. any CPU"),
    "peak_source": (_OPT_STR, "where `peak_tflops` comes from (datasheet and its figure); null "
                              "with it"),
}
# Envelope fields added after the first version-1 reports: those reports lack them and still
# load (``report render`` and ``merge`` fill them in from ``device_name``). Every other field
# must be present.
LATER_ENVELOPE_FIELDS = ("peak_tflops", "peak_source")
RECORD_FIELDS = {
    "key": (str, "unique test key: the pytest node id"),
    "test": (str, "test function name"),
    "case": (_OPT_STR, "case id (parses back with `golden.cases.Case.from_id`); null for a "
                       "test that is not a case"),
    "verdict": (str, "one of " + ", ".join(f"`{v}`" for v in VERDICTS) +
                     "; `crashed`: the worker process died in this case"),
    "reason": (_OPT_STR, "skip reason or failure message (with the worst element); null on pass"),
    "checks": (list, "short names of the failed checks: shape, nan, bound, variance, "
                     "signed-bias, mismatch-rate, kernel-raised, golden-store"),
    "rerun": (_OPT_STR, "shell line that reruns only this case"),
    "metrics": (dict, "per-case measurements (table below); empty when the kernel did not run"),
    "duration_s": (_OPT_NUM, "pytest's wall time for the test"),
    "worker": (_OPT_STR, "xdist worker id, or `main`"),
}
METRIC_FIELDS = {
    "elements": (int, "output elements M*N"),
    "max_abs_err": (_NUM, "max |Y - Y*| (infinities compared as the overflow threshold)"),
    "max_ulps": (_NUM, "max error in output ulps of Y*"),
    "rel_err": (_NUM, "max error / (|sa sb| sum_k |A||B| + |bias|): the error against the size "
                      "of the sum, what an accumulation profile's eps(K) predicts"),
    "bound_use": (_NUM, "max error / per-element bound (1 is the limit)"),
    "frac_exact": (_NUM, "fraction of elements equal to the correctly rounded Y*"),
    "frac_exact_min": (_OPT_NUM, "least fraction of finite elements equal to Y* that the "
                                 "profile's accumulation error allows (mismatch-rate check, "
                                 "`golden.bounds.mismatch_limit`); null for the exact profile"),
    "rms_z": (_NUM, "RMS of the normalized error z = (Y - Y*) / bound"),
    "mean_z": (_NUM, "signed mean of z (systematic bias)"),
    "sqnr_db": (_OPT_NUM, "SQNR against the unquantized float64 product (layer cases), else null"),
    "tosa_ratio": (_OPT_NUM, "max over elements of our bound / TOSA's FP8 dot-product bound "
                             "(`golden.bounds.tosa_fp8_bound`); null where TOSA's is 0 or inf"),
    "kernel_s": (_OPT_NUM, "kernel seconds per call (median of timed calls, device-synchronized)"),
    "tflops": (_OPT_NUM, "2 M N K / kernel_s / 1e12"),
}


class ReportError(ValueError):
    """A report file that cannot be read: names the file and what is wrong with it."""


def encode(value):
    """JSON-safe copy: non-finite floats become "inf", "-inf", "nan"; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # NumPy scalar
        return encode(value.item())
    return value


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def decode_metrics(metrics: dict) -> dict:
    """Metrics with the non-finite strings turned back into floats."""
    return {k: _NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in metrics.items()}


def decode(report: dict) -> dict:
    """The report with every record's metrics decoded (see :func:`decode_metrics`)."""
    for rec in report["records"]:
        rec["metrics"] = decode_metrics(rec["metrics"])
    return report


def _check_fields(obj: dict, table: dict, where: str, required: bool = True,
                 optional: tuple = ()) -> None:
    """Types of the fields of ``table`` in ``obj``; missing ones are an error when ``required``
    unless named in ``optional``."""
    if not isinstance(obj, dict):
        raise ReportError(f"{where}: expected an object, got {type(obj).__name__}")
    for name, (types, _) in table.items():
        if name not in obj:
            if required and name not in optional:
                raise ReportError(f"{where}: missing field {name!r}")
            continue
        value = obj[name]
        if table is METRIC_FIELDS and isinstance(value, str) and value in _NONFINITE:
            continue
        allowed = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ReportError(f"{where}: field {name!r} = {value!r} has type "
                              f"{type(value).__name__}")


def validate(report: dict, where: str = "report") -> dict:
    """Check the envelope, every record and its metrics; raise :class:`ReportError`."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise ReportError(f"{where}: not a tolerance report (no \"schema\": \"{SCHEMA}\")")
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"{where}: schema_version {version!r}; this suite reads version "
                          f"{SCHEMA_VERSION} (regenerate the report with this suite)")
    _check_fields(report.get("envelope"), ENVELOPE_FIELDS, f"{where}: envelope",
                  optional=LATER_ENVELOPE_FIELDS)
    records = report.get("records")
    if not isinstance(records, list):
        raise ReportError(f"{where}: \"records\" must be a list")
    seen = set()
    for i, rec in enumerate(records):
        _check_fields(rec, RECORD_FIELDS, f"{where}: record {i}")
        if rec["verdict"] not in VERDICTS:
            raise ReportError(f"{where}: record {i} ({rec['key']}): verdict {rec['verdict']!r} "
                              f"is not one of {', '.join(VERDICTS)}")
        if rec["key"] in seen:
            raise ReportError(f"{where}: record {i}: key {rec['key']!r} appears twice")
        seen.add(rec["key"])
        _check_fields(rec["metrics"], METRIC_FIELDS, f"{where}: record {i} metrics", required=False)
    tables = report.get("tables", {})
    if not isinstance(tables, dict) or not all(
            isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
            for rows in tables.values()):
        raise ReportError(f"{where}: \"tables\" must map names to lists of row objects")
    return report


def dump(report: dict, path: Path) -> None:
    """Write ``report`` (validated) as indented, key-sorted JSON."""
    report = encode(report)
    validate(report, str(path))
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n")


def load(path) -> dict:
    """Read, validate and decode a report; every problem is a :class:`ReportError`."""
    path = Path(path)
    if path.is_dir():
        gz = path / "tolerance.json.gz"
        path = gz if gz.exists() and not (path / "tolerance.json").exists() else (
            path / "tolerance.json")
    try:
        if path.suffix == ".gz":  # committed baselines are gzipped (baselines/)
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror}); pass a tolerance.json or its "
                          "report directory") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ReportError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return decode(validate(report, str(path)))


def markdown() -> str:
    """The schema as Markdown tables (the content of docs/tolerance-schema.md)."""

    def table(fields):
        def tname(t):
            ts = t if isinstance(t, tuple) else (t,)
            return " or ".join(sorted({{"NoneType": "null", "str": "string", "int": "integer",
                                        "float": "number", "bool": "boolean", "dict": "object",
                                        "list": "array"}[x.__name__] for x in ts}))
        rows = ["| field | type | meaning |", "|---|---|---|"]
        rows += [f"| `{n}` | {tname(t)} | {d} |" for n, (t, d) in fields.items()]
        return "\n".join(rows)

    return "\n\n".join([
        f"# Tolerance report schema, version {SCHEMA_VERSION}",
        "Generated by `python -m conformance.report schema` from `conformance/report/schema.py`; "
        "do not edit by hand.",
        f"`tolerance.json` is one object: `schema` (`\"{SCHEMA}\"`), `schema_version` "
        f"({SCHEMA_VERSION}), `envelope` and `records`. Non-finite numbers are written as the "
        "strings `\"inf\"`, `\"-inf\"`, `\"nan\"`.",
        "## envelope", table(ENVELOPE_FIELDS),
        " and ".join(f"`{n}`" for n in LATER_ENVELOPE_FIELDS) + " were added after the first "
        "version-1 reports: a report without them still loads, and `report render` and `report "
        "merge` fill them in from `device_name`.",
        "## records[]", table(RECORD_FIELDS),
        "## records[].metrics", "Present when the kernel ran (pass or fail after running).",
        table(METRIC_FIELDS),
        "## tables (optional)",
        "Named lists of row objects. Whole-grid runs (not `smoke`, not `--case`) add "
        "`fingerprint` (one row per probe: `probe`, `measured`, `exact arithmetic`) and "
        "`profile_check` (one row: `backend`, `device`, `profile`, `claims`, `measured`, "
        "`status` = consistent / overclaims / unmeasured, `problems`), see "
        "`conformance/profile_check.py`. `vllm:<Class>` runs add `vllm_selection` "
        "(which class vLLM selects per platform and loader scheme, whether it drops activation "
        "quantization, measured or from source) and `vllm_capability` (per scheme of the run: "
        "what `can_implement` said and whether the cases it accepted passed); their row fields "
        "are documented in `conformance/vllm_tables.py`.",
    ]) + "\n"
