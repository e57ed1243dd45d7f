"""``tolerance.md``: a summary that fits a GitHub PR comment (under 65,000 characters)."""

from __future__ import annotations

import statistics

from ..checks import rerun_command
from . import summary as S

__all__ = ["render_markdown", "LIMIT"]

LIMIT = 65_000
_ORDER = ("pass", "fail", "crashed", "error", "skip")


def _g(x, spec=".4g") -> str:
    return format(x, spec) if isinstance(x, int | float) else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rerun_of(record: dict, env: dict) -> str | None:
    """The record's rerun line, rebuilt from the envelope where the test gave none."""
    if record.get("rerun"):
        return record["rerun"]
    if record.get("case"):
        return rerun_command(record["case"], env["backend"], env["device"], env["seed"])
    return None


def _fingerprint(tables: dict) -> list[str]:
    """The profile check verdict and the probe fingerprint (``conformance.profile_check``)."""
    out = []
    for pc in tables.get("profile_check", []):
        out += ["", "### Arithmetic fingerprint", "",
                f"Declared profile `{pc.get('profile')}` ({pc.get('claims')}) against the probes "
                f"({pc.get('measured')}): **{pc.get('status')}**"
                + (f": {_cell(str(pc['problems']))}" if pc.get("problems") else ".")]
    rows = tables.get("fingerprint", [])
    if rows:
        out += ["", "| probe | measured | exact arithmetic |", "|---|---|---|"]
        show = lambda v: "-" if v is None else _cell(str(v))  # noqa: E731
        out += [f"| {r.get('probe')} | {show(r.get('measured'))} | "
                f"{show(r.get('exact arithmetic'))} |" for r in rows]
    return out


def _throughput(env: dict, records: list[dict], n: int = 5) -> list[str]:
    """Kernel throughput: the device's published dense FP8 peak with its source, the median
    TFLOP/s and the ``n`` fastest cases against the peak; nothing when no case was timed."""
    timed = S.timed(records)
    if not timed:
        return []
    peak = env.get("peak_tflops")
    device = f"**{_cell(env['device_name'])}**"
    head = (f"{device}: published dense FP8 peak {_g(peak)} TFLOP/s "
            f"({_cell(env.get('peak_source') or 'source unknown')})." if peak
            else f"{device}: no published FP8 peak for this device.")
    median = statistics.median(r["metrics"]["tflops"] for r in timed)
    out = ["", "### Kernel throughput", "",
           f"{head} Median {_g(median, '.3g')} TFLOP/s over {len(timed)} timed cases.", "",
           "| # | case | M x N x K | kernel_s | TFLOP/s | % of peak |",
           "|---:|---|---|---:|---:|---:|"]
    for i, r in enumerate(S.fastest(timed, n), 1):
        m = r["metrics"]
        out.append(f"| {i} | `{_cell(r['case'] or r['key'])}` | {S.shape(r)} | "
                   f"{_g(m.get('kernel_s'), '.3g')} | {_g(m['tflops'], '.3g')} | "
                   f"{_g(S.pct_peak(r, env), '.3g')} |")
    return out


def render_markdown(report: dict) -> str:
    env, records = report["envelope"], report["records"]
    emu = " (**emulated**)" if env["emulated"] else ""
    shard = f", shard {env['shard']}" if env["shard"] else ""
    merged = f", merged from shards {', '.join(env['merged_from'])}" if env["merged_from"] else ""
    v = env["versions"]
    rev = (env["git"].get("revision") or "no git")[:12] + (" (dirty)" if env["git"].get("dirty") else "")
    out = [
        f"## FP8 conformance: `{env['backend']}` on {env['device']}{emu}",
        "",
        f"{env['kernel']} on **{env['device_name']}**"
        + (f" (driver {env['driver']})" if env["driver"] else "")
        + (f", {env['runtime']}" if env["runtime"] else "")
        + f"; profile `{env['profile']}`; grid `{env['grid']}`, seed {env['seed']}{shard}{merged}.",
        f"torch {v.get('torch') or '-'}, vllm {v.get('vllm') or '-'}, numpy {v.get('numpy')}, "
        f"git {rev}, {env['date']}.",
        "",
    ]
    counts = S.verdict_counts(records)
    out.append("**" + ", ".join(f"{counts[k]} {k}" for k in _ORDER if counts[k]) + "**")
    out += ["", "### Verdicts per scheme", "",
            "| scheme | backend | pass | fail | crashed | error | skip | worst bound use | worst ulps |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ran = S.ran(records)
    for sch, c in S.by_scheme(records).items():
        mine = [r for r in ran if S.scheme(r) == sch]
        wb = max((r["metrics"].get("bound_use", 0) for r in mine), default=None)
        wu = max((r["metrics"].get("max_ulps", 0) for r in mine), default=None)
        out.append(f"| {sch} | {env['backend']} | " + " | ".join(str(c[k]) for k in _ORDER)
                   + f" | {_g(wb)} | {_g(wu)} |")
    for metric, label in (("bound_use", "Worst bound use"), ("max_ulps", "Worst error in ulps"),
                          ("rel_err", "Worst error relative to sum|A||B|")):
        r = S.largest(ran, metric)
        if r is not None:
            out += ["", f"**{label}:** {_g(r['metrics'].get(metric))} in `{r['case'] or r['key']}`"]
    use, tosa = S.spread(records, "bound_use"), S.spread(records, "tosa_ratio")
    if use:
        out += ["", f"**Tightness:** bound use median {_g(use['median'])}, max {_g(use['max'])} "
                f"over {use['n']} cases" + (
                    f"; our bound / TOSA's FP8 dot-product bound: median {_g(tosa['median'])}, "
                    f"max {_g(tosa['max'])}" if tosa else "")]
    sq = S.sqnr_by_scheme(records)
    if sq:
        out += ["", "### SQNR against the unquantized float64 product (layer cases)", "",
                "| scheme | cases | min dB | median dB |", "|---|---:|---:|---:|"]
        out += [f"| {s} | {d['n']} | {d['min']:.2f} | {d['median']:.2f} |" for s, d in sq.items()]
    out += _throughput(env, records)
    top = S.worst(records, "bound_use", 10)
    if top:
        out += ["", "### Ten worst cases", "",
                "| # | verdict | bound use | ulps | case | rerun |", "|---:|---|---:|---:|---|---|"]
        for i, r in enumerate(top, 1):
            m = r["metrics"]
            rerun = rerun_of(r, env)
            out.append(f"| {i} | {r['verdict']} | {_g(m.get('bound_use'))} | {_g(m.get('max_ulps'))} | "
                       f"`{_cell(r['case'] or r['key'])}` | "
                       + (f"`{_cell(rerun)}`" if rerun else "-") + " |")
    tables = report.get("tables") or {}
    if "vllm_selection" in tables or "vllm_capability" in tables:
        from ..vllm_tables import markdown_tables

        out += ["", markdown_tables(tables.get("vllm_selection", []),
                                    tables.get("vllm_capability", [])).replace("\n## ", "\n### ")
                .replace("## ", "### ", 1)]
    out += _fingerprint(tables)
    for err in tables.get("table_errors", []):
        out += ["", f"**Table {err.get('table')} not computed:** {err.get('error')}"]
    skips_md = _skips(records)
    failed = [r for r in records if r["verdict"] in ("fail", "crashed", "error")]
    if failed:
        out += ["", f"### Failures ({len(failed)})", ""]
        room = LIMIT - 1000 - len(skips_md)
        for r in failed:
            block = ["<details><summary>" + f"{r['verdict']}: <code>{_html(r['case'] or r['key'])}</code>"
                     + "</summary>", "", "```", (r["reason"] or "").strip()[:1500], "```", "</details>"]
            if sum(len(x) + 1 for x in out) + sum(len(x) + 1 for x in block) > room:
                out.append(f"... {len(failed)} failures in all; see tolerance.json")
                break
            out += block
    out.append(skips_md)
    text = "\n".join(out) + "\n"
    return text if len(text) < LIMIT else text[:LIMIT - 80] + "\n\n... (cut to fit a PR comment)\n"


def _skips(records) -> str:
    """The skip-reason table (at most 40 reasons), or an empty string."""
    skips: dict = {}
    for r in records:
        if r["verdict"] == "skip":
            skips[r["reason"]] = skips.get(r["reason"], 0) + 1
    if not skips:
        return ""
    rows = ["", "<details><summary>Skips by reason</summary>", "", "| cases | reason |", "|---:|---|"]
    for reason, n in sorted(skips.items(), key=lambda kv: -kv[1])[:40]:
        rows.append(f"| {n} | {_cell(str(reason))[:300]} |")
    if len(skips) > 40:
        rows.append(f"| ... | {len(skips) - 40} more reasons in tolerance.json |")
    return "\n".join([*rows, "", "</details>"])


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
