"""``tolerance.html``: one self-contained page (inline PNG plots, inline CSS, no scripts).

Plots: error against K per accumulation profile, the bound-use histogram, a scheme-by-shape
heatmap of the worst bound use, and SQNR per scheme. Extra reports (``render`` with several
files) add their series to the error-against-K plot, to compare profiles.
"""

from __future__ import annotations

import base64
import html
import io

from golden.bounds import get_profile

from . import summary as S
from .markdown import rerun_of

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3} td.n{text-align:right} code{font-size:12px}
.fail{color:#b00020;font-weight:bold} .pass{color:#1b7f3b} .emu{background:#fff3cd;padding:4px}
.plots img{max-width:100%;border:1px solid #ddd;margin:6px 0}
pre{background:#f7f7f7;padding:6px;overflow-x:auto;font-size:12px}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _g(x) -> str:
    return format(x, ".4g") if isinstance(x, int | float) else "-"


def _peak(env: dict) -> str:
    """The envelope's published FP8 peak with its source, for the header table."""
    if env.get("peak_tflops") is None:
        return "no published FP8 peak for this device"
    return f"{_g(env['peak_tflops'])} TFLOP/s dense ({env.get('peak_source') or 'source unknown'})"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict, extra: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import ticker

    out = []
    # 1. error against K, one colour per (backend, profile), with the profile's eps(K) line
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    marks = {"fp32": "o", "bf16": "^", "fp16": "s"}
    kmax = 2
    for i, rep in enumerate([report, *extra]):
        env = rep["envelope"]
        color = f"C{i}"
        pts = [(S.case_of(r), r["metrics"].get("rel_err")) for r in S.ran(rep["records"])
               if S.case_of(r) and S.finite(r["metrics"].get("rel_err"))]
        zero = sum(1 for _, v in pts if v == 0)
        label = f"{env['backend']}/{env['device']}: {env['profile']} ({zero} cases with no error)"
        for dtype, mk in marks.items():
            sel = [(c.K, v) for c, v in pts if c.out == dtype and v > 0]
            if sel:
                k, v = zip(*sel, strict=True)
                ax.scatter(k, v, s=12, alpha=0.5, marker=mk, color=color, label=label)
                label = None
                kmax = max(kmax, *k)
        try:
            prof = get_profile(env["profile"])
        except ValueError:
            continue
        if not prof.exact:
            ks = np.unique(np.geomspace(1, max(kmax, 2), 60).astype(int))
            ax.plot(ks, [prof.eps_acc(int(k)) for k in ks], color=color, lw=1,
                    label=f"{env['profile']}: eps_acc(K), the bound's accumulation term")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    # Plain tick labels: the default powers (mathtext) and minor ticks were a third of the
    # HTML's drawing time, paid at the end of every run.
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_formatter(ticker.LogFormatter())
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel("max |Y - Y*| / (|sa sb| sum|A||B| + |bias|)")
    ax.set_title("Error against K per accumulation profile (o fp32, ^ bf16, s fp16 output)",
                 fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    out.append(("Error against K (points above the line: output rounding, not accumulation)",
                _png(fig)))

    ran = S.ran(report["records"])
    # 2. bound-use histogram
    use = np.array([r["metrics"]["bound_use"] for r in ran if S.finite(r["metrics"].get("bound_use"))])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if use.size:
        top = max(1.05, float(use.max()) * 1.02) if use.max() <= 4 else 4.0
        bins = np.linspace(0, top, 43)
        ax.hist(np.clip(use, 0, top), bins=bins, color="#4c78a8", log=True)
        ax.yaxis.set_major_formatter(ticker.LogFormatter())
        ax.minorticks_off()
        ax.axvline(1.0, color="#b00020", ls="--", lw=1, label="bound")
        ax.legend(fontsize=8)
    ax.set_xlabel("bound use (max error / bound; >1 fails; clipped at 4)")
    ax.set_ylabel("cases")
    ax.set_title(f"Bound use over {use.size} cases that ran")
    out.append(("Bound-use histogram", _png(fig)))

    # 3. scheme-by-shape heatmap of the worst bound use
    cells: dict[tuple[str, str], list] = {}
    for r in ran:
        if S.case_of(r) is not None:
            cells.setdefault((S.scheme(r), S.shape(r)), []).append(r)
    if cells:
        schemes = sorted({s for s, _ in cells})
        shapes = sorted({h for _, h in cells}, key=lambda h: [int(x) for x in h.split("x")])
        grid = np.full((len(schemes), len(shapes)), np.nan)
        for (s, h), rs in cells.items():
            grid[schemes.index(s), shapes.index(h)] = max(r["metrics"].get("bound_use", 0) for r in rs)
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(shapes) + 3), 0.4 * len(schemes) + 2))
        im = ax.imshow(np.minimum(grid, 1.5), cmap="viridis", vmin=0, vmax=1.5, aspect="auto")
        for (s, h), rs in cells.items():
            if any(r["verdict"] == "fail" for r in rs):
                ax.text(shapes.index(h), schemes.index(s), "F", ha="center", va="center",
                        color="red", fontweight="bold")
        ax.set_xticks(range(len(shapes)), shapes, rotation=60, fontsize=7)
        ax.set_yticks(range(len(schemes)), schemes, fontsize=8)
        fig.colorbar(im, ax=ax, label="worst bound use (F: a case failed)")
        ax.set_title("Worst bound use per scheme and shape (M x N x K); blank: nothing ran")
        out.append(("Scheme by shape", _png(fig)))

    # 4. SQNR per scheme
    vals: dict[str, list] = {}
    for r in ran:
        if S.finite(r["metrics"].get("sqnr_db")):
            vals.setdefault(S.scheme(r), []).append(r["metrics"]["sqnr_db"])
    if vals:
        names = sorted(vals)
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.8))
        ax.boxplot([vals[n] for n in names], orientation="horizontal")
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        ax.set_xlabel("SQNR (dB) against the unquantized float64 product")
        ax.set_title("SQNR per scheme (layer cases)")
        out.append(("SQNR per scheme", _png(fig)))
    return out


_TABLE_TITLES = {
    "vllm_selection": "vLLM kernel selection per platform and loader scheme (is_supported "
                      "measured on this platform only, assumed elsewhere)",
    "vllm_capability": "vLLM kernel capability vs conformance (VIOLATION: accepted by "
                       "can_implement, then wrong)",
    "table_errors": "Tables that could not be computed",
}


def _rows_table(name: str, rows: list[dict]) -> str:
    """A report table (list of row objects) as an HTML table, columns in first-seen order."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    def cell(v):
        return _e("; ".join(map(str, v)) if isinstance(v, list) else ("-" if v is None else v))
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return (f"<h2>{_e(_TABLE_TITLES.get(name, name))}</h2><table><tr>"
            + "".join(f"<th>{_e(c)}</th>" for c in cols) + f"</tr>{body}</table>")


def render_html(report: dict, extra: list[dict] | None = None) -> str:
    env, records = report["envelope"], report["records"]
    counts = S.verdict_counts(records)
    title = f"FP8 conformance: {env['backend']} on {env['device']} ({env['device_name']})"
    h = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
         f"<style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    if env["emulated"]:
        h.append("<p class='emu'>These results come from a CPU <b>emulation</b> of the kernel's "
                 "contract, not from the device.</p>")
    h.append("<table>" + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in (
            ("kernel", env["kernel"]), ("profile", env["profile"]),
            ("driver / runtime", f"{env['driver'] or '-'} / {env['runtime'] or '-'}"),
            ("grid / seed / shard", f"{env['grid']} / {env['seed']} / {env['shard'] or 'whole run'}"),
            ("merged from", ", ".join(env["merged_from"]) or "-"),
            ("versions", ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)),
            ("git", f"{env['git'].get('revision')}" + (" (dirty)" if env["git"].get("dirty") else "")),
            ("FP8 peak", _peak(env)),
            ("command", env["command"]), ("date", env["date"]))) + "</table>")
    h.append("<p><b>" + ", ".join(f"{n} {v}" for v, n in counts.most_common()) + "</b></p>")
    h.append("<h2>Verdicts per scheme</h2><table><tr><th>scheme</th><th>pass</th><th>fail</th>"
             "<th>crashed</th><th>error</th><th>skip</th></tr>")
    for sch, c in S.by_scheme(records).items():
        h.append(f"<tr><td>{_e(sch)}</td>" + "".join(
            f"<td class='n'>{c[k]}</td>" for k in ("pass", "fail", "crashed", "error", "skip")) + "</tr>")
    h.append("</table>")
    for name, rows in (report.get("tables") or {}).items():
        h.append(_rows_table(name, rows))
    h.append("<h2>Plots</h2><div class='plots'>")
    for name, src in _plots(report, extra or []):
        h.append(f"<h3>{_e(name)}</h3><img alt='{_e(name)}' src='{src}'>")
    h.append("</div><h2>Ten worst cases</h2><table><tr><th>verdict</th><th>bound use</th>"
             "<th>ulps</th><th>case</th><th>rerun</th></tr>")
    for r in S.worst(records, "bound_use", 10):
        m = r["metrics"]
        cls = "pass" if r["verdict"] == "pass" else "fail"
        h.append(f"<tr><td class='{cls}'>{_e(r['verdict'])}</td>"
                 f"<td class='n'>{_g(m.get('bound_use'))}</td><td class='n'>{_g(m.get('max_ulps'))}</td>"
                 f"<td><code>{_e(r['case'] or r['key'])}</code></td>"
                 f"<td><code>{_e(rerun_of(r, env) or '-')}</code></td></tr>")
    h.append("</table>")
    failed = [r for r in records if r["verdict"] in ("fail", "crashed", "error")]
    if failed:
        h.append(f"<h2>Failures ({len(failed)})</h2>")
        for r in failed[:200]:
            h.append(f"<details><summary class='fail'>{_e(r['verdict'])}: <code>{_e(r['case'] or r['key'])}"
                     f"</code></summary><pre>{_e(r['reason'] or '')}</pre></details>")
    h.append(f"<h2>All {len(records)} records</h2><details><summary>show</summary><table><tr>"
             "<th>verdict</th><th>case</th><th>bound use</th><th>ulps</th><th>frac exact</th>"
             "<th>SQNR dB</th><th>TFLOP/s</th><th>% peak</th></tr>")
    for r in records:
        m = r["metrics"]
        h.append(f"<tr><td>{_e(r['verdict'])}</td><td><code>{_e(r['case'] or r['key'])}</code></td>"
                 + "".join(f"<td class='n'>{_g(m.get(k))}</td>"
                           for k in ("bound_use", "max_ulps", "frac_exact", "sqnr_db", "tflops"))
                 + f"<td class='n'>{_g(S.pct_peak(r, env))}</td></tr>")
    h.append("</table></details></body></html>")
    return "\n".join(h)


