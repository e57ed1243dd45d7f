"""Two tables about vLLM's FP8 linear kernels for the tolerance report (plain data).

* :func:`selection_table`: which kernel class vLLM 0.33 picks, per platform and per scheme a
  loader can produce. It walks each platform's priority list as
  ``choose_scaled_mm_linear_kernel`` does (``vllm/model_executor/kernels/linear/__init__.py``),
  calling the real ``can_implement(config)`` of every class. ``is_supported`` is called for
  real on the current platform only; on the others it is *assumed* true and the row says so.
  For W8A8 schemes it also says whether the selected class leaves the activations unquantized
  (``drops_act_quant``): measured by running the class on a tiny layer where it can run here,
  else taken from a declared table that cites vLLM's source.
* :func:`capability_table`: from the records of one ``--backend=vllm:<Class>`` run, one row per
  (weight scheme, activation scheme, format, x dtype, out dtype) with the case counts, what
  ``can_implement`` said and a status (conforms / VIOLATION / rejected / not run).

:func:`markdown_tables` renders both. Rows are lists of dicts holding str/bool/int/None (and,
for ``rejected_before``, a list of str). The capability part needs no vllm.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
from collections import Counter

from golden.cases import Case, CaseError
from kernel.vllm_linear import A_KEY, W_KEY, eager_vllm_config, emulated, layer_config

__all__ = ["selection_table", "capability_table", "capability_summary", "markdown_tables",
           "PRIORITY_LISTS", "SCHEMES", "ASSUMED", "MEASURED"]

ASSUMED = "assumed (off-platform)"
MEASURED = "measured"

# path -> the priority-list name in vllm/model_executor/kernels/linear/__init__.py
PRIORITY_LISTS = {
    "w8a8": "_POSSIBLE_FP8_KERNELS",
    "block": "_POSSIBLE_FP8_BLOCK_KERNELS",
    "w8a16": "_POSSIBLE_WFP8A16_KERNELS",
}
# path -> the (weight key, activation key) pairs a loader hands over (names in quant_utils).
SCHEMES = {
    # fp8.py (l.261-280) and compressed_tensors_w8a8_fp8.py (l.46-53): weight per tensor or
    # per channel; activations static per tensor, dynamic per tensor or dynamic per token.
    "w8a8": [(w, a) for w in ("kFp8StaticTensorSym", "kFp8StaticChannelSym")
             for a in ("kFp8StaticTensorSym", "kFp8DynamicTensorSym", "kFp8DynamicTokenSym")],
    # fp8.py with weight_block_size [128, 128]: 128x128 weight blocks, dynamic 1x128 activations.
    "block": [("kFp8Static128BlockSym", "kFp8Dynamic128Sym")],
    # compressed_tensors_w8a16_fp8.py: STRATEGY_TO_WEIGHT_QUANT_KEY (tensor, channel, block) and
    # kFp8StaticTensorSym if is_static_input_scheme else kFp8DynamicTensorSym (l.47-49); its
    # process_weights_after_loading asserts a block weight is not static (l.122).
    "w8a16": [("kFp8StaticTensorSym", "kFp8StaticTensorSym"),
              ("kFp8StaticTensorSym", "kFp8DynamicTensorSym"),
              ("kFp8StaticChannelSym", "kFp8StaticTensorSym"),
              ("kFp8StaticChannelSym", "kFp8DynamicTensorSym"),
              ("kFp8Static128BlockSym", "kFp8DynamicTensorSym")],
}
# Which loader hands each W8A8/block pair over (fp8.py l.261-280: tensor weight, dynamic is per
# token only where cutlass_fp8_supported(); compressed_tensors_w8a8_fp8.py l.46-53: dynamic is
# always per token).
_LOADERS = {
    ("kFp8StaticTensorSym", "kFp8StaticTensorSym"): "fp8.py, compressed-tensors",
    ("kFp8StaticTensorSym", "kFp8DynamicTensorSym"): "fp8.py (no cutlass)",
    ("kFp8StaticTensorSym", "kFp8DynamicTokenSym"): "fp8.py (cutlass), compressed-tensors",
    ("kFp8StaticChannelSym", "kFp8StaticTensorSym"): "compressed-tensors",
    ("kFp8StaticChannelSym", "kFp8DynamicTensorSym"): "none (suite-only pair)",
    ("kFp8StaticChannelSym", "kFp8DynamicTokenSym"): "compressed-tensors",
    ("kFp8Static128BlockSym", "kFp8Dynamic128Sym"): "fp8.py (block 128x128)",
}
# The suite's scheme names: kernel/vllm_linear.py's W_KEY / A_KEY inverted (a W8A16 row is
# a=none whatever its activation key, so "none" is left out of the inversion).
_W_NAME = {key: name for name, key in W_KEY.items()}
_A_NAME = {key: name for name, key in A_KEY.items() if name != "none"}
# (N, K) of the config handed to can_implement: some classes check the shape (block multiples
# of 128, aiter's tuned shapes), so the table is for this shape.
WEIGHT_SHAPE = (256, 512)
# Rejection reasons that depend on this machine's environment rather than on the scheme.
_ENV_DEPENDENT = {
    "Model configuration is required": "needs a model config (none here)",
    "tuned configuration": "aiter tuning files absent here",
    "compute capability ofNone": "no compute capability here",
}

# Classes that cannot run here: whether they quantize the activation before the GEMM, read
# from vLLM 0.33's source. Citations are resolved to file:line of the named method at run time
# (inspect), so they follow the installed wheel.
# class name -> (drops activation quantization, method to cite, what the source does)
_FROM_SOURCE = {
    "XPUW8A16FP8LinearKernel": (True, "apply_weights", "x unquantized to _xpu_C.fp8_gemm_w8a16"),
    "MarlinFP8ScaledMMLinearKernel": (
        True, "apply_weights", "weight-only Marlin; PWAL deletes input_scale"),
    "HummingFP8ScaledMMLinearKernel": (
        True, "apply_weights", "x to apply_humming_linear, no QuantFP8 (weight-only config)"),
    "CPUFp8PerTensorScaledMMLinearKernel": (
        True, "apply_weights", "x unquantized to _C.fp8_scaled_mm_cpu (W8A16)"),
    "CPUFp8ChannelWiseScaledMMLinearKernel": (
        True, "apply_weights", "x unquantized to _C.fp8_scaled_mm_cpu (W8A16)"),
    "CPUFp8BlockScaledMMKernel": (
        True, "apply_weights", "apply_input_quant=False; x to _C.fp8_scaled_mm_cpu (W8A16)"),
    "CPUFP8W8A8ScaledMMLinearKernel": (
        False, "apply_weights", "fp8_scaled_mm_with_quant quantizes x (per token if dynamic)"),
    "CPUFp8W8A8BlockScaledMMKernel": (
        False, "apply_weights", "fp8_scaled_mm_with_quant quantizes x per token, not 1x128"),
    "B12xTensorFP8ScaledMMLinearKernel": (False, "apply_weights", "QuantFP8 before the GEMM"),
    "FlashInferFp8DeepGEMMDynamicBlockScaledKernel": (
        False, "apply_block_scaled_mm", "quantizes BF16 x inside the FlashInfer/DeepGEMM op"),
}
# Classes not listed above that keep a base class's apply_weights: the base decides.
# base class name -> (drops, what the base does); a block base only when apply_input_quant.
_BASE_APPLY = {
    "FP8ScaledMMLinearKernel": (False, "base apply_weights: QuantFP8, then apply_scaled_mm"),
    "Fp8BlockScaledMMLinearKernel": (False, "base apply_weights: QuantFP8 1x128"),
}
# Classes this module runs on CPU to measure: "torch" runs as is (is_supported is true on
# CPU), "xpu" runs through a subclass whose is_supported is (True, None) and needs
# kernel.xpu_emulation's CPU versions of the _xpu_C ops.
_RUNNABLE = {
    "PerTensorTorchFP8ScaledMMLinearKernel": "torch",
    "ChannelWiseTorchFP8ScaledMMLinearKernel": "torch",
    "XPUW8A16FP8LinearKernel": "xpu",
    "XPUW8A8FP8LinearKernel": "xpu",
    "XPUFp8BlockScaledMMKernel": "xpu",
}
# The ops a measured run can reach for its GEMM; the first one called is the GEMM.
_GEMM_OPS = ("aten::_scaled_mm", "_xpu_C::fp8_gemm", "_xpu_C::fp8_gemm_w8a16",
             "_xpu_C::fp8_bmm")


# --- selection -----------------------------------------------------------------------------

def _config(wkey: str, akey: str, shape=WEIGHT_SHAPE):
    import torch

    return layer_config(wkey, akey, shape, torch.bfloat16, torch.bfloat16)


def _scheme(path: str, wkey: str, akey: str) -> str:
    if path != "w8a16":
        return f"w={_W_NAME[wkey]},a={_A_NAME[akey]}"
    static = " (static)" if akey == "kFp8StaticTensorSym" else ""
    return f"w={_W_NAME[wkey]},a=none{static}"


def _call(fn, *args) -> tuple[bool, str | None]:
    try:
        ok, why = fn(*args)
    except Exception as exc:  # a class whose check cannot even run here
        return False, f"raised {type(exc).__name__}: {exc}"
    return bool(ok), why


def _walk(classes, config, check_supported: bool, disabled=()):
    """First class accepting ``config``, in list order, as ``choose_scaled_mm_linear_kernel``
    does with no force_kernel and ``--linear-backend auto``; ``is_supported`` is called only
    when ``check_supported`` (else taken as true). Returns (class or None, rejections)."""
    rejected = []
    for cls in classes:
        if cls.__name__ in disabled:
            rejected.append(f"{cls.__name__}: disabled by VLLM_DISABLED_KERNELS")
            continue
        if check_supported:
            ok, why = _call(cls.is_supported, None)
            if not ok:
                rejected.append(f"{cls.__name__}: is_supported: {why}")
                continue
        ok, why = _call(cls.can_implement, config)
        if ok:
            return cls, rejected
        rejected.append(f"{cls.__name__}: {why}")
    return None, rejected


def selection_table(measure: bool = True) -> list[dict]:
    """Which class vLLM selects, per platform of each FP8 priority list and per loader scheme.

    Row fields: ``platform`` (PlatformEnum name), ``path`` (w8a8 / block / w8a16), ``list``
    (vLLM's list name), ``weight_key``, ``act_key`` (quant_utils names), ``scheme`` (the suite's
    ``w=...,a=...``, a=none on the W8A16 path), ``loaders`` (which loader hands this pair
    over), ``selected`` (class name or None), ``rejected_before`` (``"Class: reason"`` for
    each class tried before it), ``is_supported`` (:data:`MEASURED` on the current platform,
    :data:`ASSUMED` elsewhere), ``drops_act_quant`` (W8A8 and block paths: the selected class
    leaves the activations unquantized; None for the W8A16 path, no selection or unknown),
    ``drops_how`` (``"measured on CPU: ..."``, ``"from source: file:line ..."`` or ``"n/a: ..."``)
    and ``note``. ``measure=False`` runs no layer: ``drops_*`` then come from source.
    Measuring the XPU classes installs ``kernel.xpu_emulation``'s ops in this process.
    """
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm import envs
    from vllm.model_executor.kernels import linear as L
    from vllm.platforms import current_platform

    here = current_platform._enum
    disabled = tuple(envs.VLLM_DISABLED_KERNELS or ())
    rows, cache = [], {}

    def drops(cls, wkey, akey, path):
        key = (cls.__name__, wkey, akey)
        if key not in cache:
            cache[key] = _drops(cls, wkey, akey, path, measure)
        return cache[key]

    with eager_vllm_config():
        for path, list_name in PRIORITY_LISTS.items():
            for platform, classes in getattr(L, list_name).items():
                on = platform == here
                for wkey, akey in SCHEMES[path]:
                    config = _config(wkey, akey)
                    cls, rejected = _walk(classes, config, on, disabled)
                    row = {
                        "platform": platform.name, "path": path, "list": list_name,
                        "weight_key": wkey, "act_key": akey,
                        "scheme": _scheme(path, wkey, akey),
                        "loaders": _LOADERS.get((wkey, akey), "compressed-tensors W8A16"),
                        "selected": cls.__name__ if cls else None,
                        "rejected_before": rejected,
                        "is_supported": MEASURED if on else ASSUMED,
                        "drops_act_quant": None, "drops_how": "n/a: weight-only scheme",
                    }
                    notes, raised = [], None
                    if path != "w8a16":
                        row["drops_how"] = None
                        if cls is not None:
                            row["drops_act_quant"], row["drops_how"], raised = drops(
                                cls, wkey, akey, path)
                    if not classes:
                        notes.append("empty list: vLLM raises ValueError")
                    elif cls is None:
                        notes.append("no class accepts: vLLM raises ValueError")
                    env = {msg for r in rejected for k, msg in _ENV_DEPENDENT.items() if k in r}
                    if env:
                        notes.append("env-dependent rejection: " + "; ".join(sorted(env)))
                    if raised:
                        notes.append(f"apply_weights raised here: {raised}")
                    if path != "w8a16":  # accepting classes that would serve it weight-only
                        alts = [c.__name__ for c in classes if c is not cls
                                and (_source_claim(c) or (False,))[0]
                                and _call(c.can_implement, config)[0]]
                        if alts:
                            notes.append("drop-act-quant fallbacks: " + ", ".join(alts))
                    if row["drops_act_quant"]:
                        nxt, _ = _walk(classes[classes.index(cls) + 1:], config, on, disabled)
                        notes.append("W8A8 checkpoint served weight-only (input_scale unused)"
                                     + (f"; next accepting class: {nxt.__name__}" if nxt else ""))
                    row["note"] = "; ".join(notes)
                    rows.append(row)
    return rows


# --- does the selected class quantize the activation? ----------------------------------------

def _source_ref(cls, method: str) -> str:
    owner = next(k for k in cls.__mro__ if method in vars(k))
    fn = vars(owner)[method]
    lines, start = inspect.getsourcelines(fn)
    path = inspect.getsourcefile(fn) or "?"
    path = path[path.rfind("vllm/"):] if "vllm/" in path else path
    return f"{path}:{start}-{start + len(lines) - 1} ({owner.__name__}.{method})"


def _source_claim(cls) -> tuple[bool, str, str] | None:
    """(drops, method to cite, what it does) from the declared tables, or None if unknown."""
    if cls.__name__ in _FROM_SOURCE:
        return _FROM_SOURCE[cls.__name__]
    owner = next(k for k in cls.__mro__ if "apply_weights" in vars(k)).__name__
    if owner in _BASE_APPLY and getattr(cls, "apply_input_quant", True):
        return (*_BASE_APPLY[owner][:1], "apply_weights", _BASE_APPLY[owner][1])
    return None


def _from_source(cls, why_not_measured: str) -> tuple[bool | None, str]:
    claim = _source_claim(cls)
    if claim is None:
        return None, f"unknown: not declared, not measured ({why_not_measured})"
    drops, method, what = claim
    try:
        ref = _source_ref(cls, method)
    except (OSError, TypeError, StopIteration):
        ref = f"{cls.__module__}.{cls.__name__}.{method}"
    return drops, f"from source: {ref}: {what} [{why_not_measured}]"


def _xpu_emulation():
    """``kernel.xpu_emulation`` installed (CPU ``_xpu_C`` ops registered), or a reason."""
    import torch

    try:
        emu = importlib.import_module("kernel.xpu_emulation")
    except ImportError as exc:
        return None, f"kernel.xpu_emulation not importable ({exc})"
    try:
        emu.install()
    except Exception as exc:
        if not hasattr(torch.ops._xpu_C, "fp8_gemm"):
            return None, f"kernel.xpu_emulation.install() raised {type(exc).__name__}: {exc}"
    return emu, None


def _drops(cls, wkey, akey, path, measure) -> tuple[bool | None, str, str | None]:
    """(drops activation quantization, how that is known, what apply_weights raised here)."""
    kind = _RUNNABLE.get(cls.__name__)
    if not measure:
        return (*_from_source(cls, "measurement off"), None)
    if kind is None:
        return (*_from_source(cls, "cannot run here"), None)
    run_cls = cls
    if kind == "xpu":
        emu, why = _xpu_emulation()
        if emu is None:
            return (*_from_source(cls, why), None)
        run_cls = emulated(cls)
    quant_calls, gemm, raised = _run_tiny_layer(run_cls, wkey, akey, path)
    if gemm is None:  # it failed before reaching a GEMM op: nothing measured
        return (*_from_source(cls, raised or "no GEMM op seen"), raised)
    op, a_dtype = gemm
    how = (f"measured on CPU: QuantFP8 calls={quant_calls}, {op} A={a_dtype}"
           + (" (emulated op)" if kind == "xpu" else ""))
    return "float8" not in a_dtype, how, raised


@contextlib.contextmanager
def _watch(seen: dict):
    """Count QuantFP8.forward_native calls into ``seen["quant"]`` and append (op, A dtype) of
    each GEMM op called to ``seen["gemm"]`` (a TorchDispatchMode sees aten and _xpu_C ops)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from vllm.model_executor.layers.quantization.input_quant_fp8 import QuantFP8

    native = QuantFP8.forward_native

    def counted(self, *a, **kw):
        seen["quant"] += 1
        return native(self, *a, **kw)

    class Gemms(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            if name in _GEMM_OPS and args and isinstance(args[0], torch.Tensor):
                seen["gemm"].append((name, str(args[0].dtype).removeprefix("torch.")))
            return func(*args, **(kwargs or {}))

    QuantFP8.forward_native = counted
    try:
        with Gemms():
            yield seen
    finally:
        QuantFP8.forward_native = native


def _run_tiny_layer(cls, wkey, akey, path, M=4, N=128, K=256):
    """Build the layer a loader hands over, run PWAL and apply_weights.

    Returns (QuantFP8 calls, (GEMM op, A dtype) of the first GEMM op or None, what was raised
    or None): a class that raises after its GEMM still says how the activation reached it.
    """
    seen = {"quant": 0, "gemm": []}
    try:
        _build_and_apply(cls, wkey, akey, path, M, N, K, seen)
        raised = None
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"[:160]
    return seen["quant"], (seen["gemm"][0] if seen["gemm"] else None), raised


def _build_and_apply(cls, wkey, akey, path, M, N, K, seen):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(M, K, generator=g).to(torch.bfloat16)
    w = torch.randn(N, K, generator=g) * 0.1
    cfg = _config(wkey, akey, (N, K))

    def param(t):
        return torch.nn.Parameter(t, requires_grad=False)

    layer = torch.nn.Module()
    if path == "block":  # fp8.py block: [N,K] weight and a [N/128, K/128] weight_scale_inv
        ws = w.abs().reshape(N // 128, 128, K // 128, 128).amax((1, 3)) / 448.0
        wq = (w / ws.repeat_interleave(128, 0).repeat_interleave(128, 1)).to(torch.float8_e4m3fn)
        layer.weight = param(wq)
        layer.weight_scale_inv = param(ws.float())
        layer.input_scale = None
        kernel = cls(cfg)
    else:  # per-tensor 0-D or per-channel [N,1] scale; weight as the [K,N] .t() view
        per_channel = wkey == "kFp8StaticChannelSym"
        ws = (w.abs().amax(1, keepdim=True) if per_channel else w.abs().max()).float() / 448.0
        layer.weight = param((w / ws).clamp(-448, 448).to(torch.float8_e4m3fn).t())
        layer.weight_scale = param(ws)
        layer.input_scale = (param(x.float().abs().max() / 448.0)
                             if akey == "kFp8StaticTensorSym" else None)
        kernel = cls(cfg, layer_param_names=["weight", "weight_scale", "input_scale",
                                             "input_scale_ub"])
    layer.input_scale_ub = None
    layer.input_size_per_partition, layer.output_size_per_partition = K, N
    kernel.process_weights_after_loading(layer)
    with _watch(seen):
        y = kernel.apply_weights(layer, x, None)
    if tuple(y.shape) != (M, N):
        raise RuntimeError(f"apply_weights returned shape {tuple(y.shape)}")


# --- capability ------------------------------------------------------------------------------

_RAN = ("pass", "fail", "crashed", "error")
_REJECT = re.compile(r"\.can_implement rejects: (.*)$", re.S)
_PREFIX = re.compile(r"^vllm:\w+/\w+: ")


def _fmt(c: Case) -> str:
    return c.fmt_a if c.fmt_a == c.fmt_b else f"{c.fmt_a}x{c.fmt_b}"


def capability_table(records: list[dict], kernel_class: str) -> list[dict]:
    """One row per (w, a, format, x, out) among the layer cases of a ``vllm:<kernel_class>`` run.

    Row fields: ``kernel`` (the class), ``w``, ``a``, ``format``, ``x``, ``out``, ``cases``,
    ``run`` (the kernel was called: pass/fail/crashed/error), ``passed``, ``failed`` (fail or
    crashed), ``errors`` (pytest errors), ``skipped``, ``checks`` (failed check names, comma
    separated, or None), ``can_implement`` (``"accepts"``, ``"rejects: <vLLM's reason>"``, or
    ``"not evaluated"`` when every case skipped before it) and ``status``: ``"conforms"``,
    ``"VIOLATION: accepted but N cases fail"``, ``"incomplete: N errors"``, ``"rejected (never
    wrong numbers)"`` or ``"not run (<other skip reason>)"``. Records that are not layer cases
    (the adapter runs layer cases only) are left out.
    """
    groups: dict[tuple, list[tuple[Case, dict]]] = {}
    for rec in records:
        try:
            c = Case.from_id(rec["case"]) if rec.get("case") else None
        except CaseError:
            c = None
        if c is None or c.level != "layer":
            continue
        groups.setdefault((c.w, c.a, _fmt(c), c.x, c.out), []).append((c, rec))
    rows = []
    for (w, a, fmt, x, out), members in sorted(groups.items()):
        verdicts = Counter(rec["verdict"] for _, rec in members)
        rejects, other = Counter(), Counter()
        checks = set()
        for _, rec in members:
            checks.update(rec.get("checks") or rec.get("failed_checks") or ())
            if rec["verdict"] != "skip":
                continue
            reason = str(rec.get("reason") or "")
            m = _REJECT.search(reason)
            if m and kernel_class in reason[:m.start()]:
                rejects[m.group(1).strip()] += 1
            else:
                other[_PREFIX.sub("", reason).strip() or "no reason"] += 1
        row = {"kernel": kernel_class, "w": w, "a": a, "format": fmt, "x": x, "out": out,
               "cases": len(members), "run": sum(verdicts[v] for v in _RAN),
               "passed": verdicts["pass"], "failed": verdicts["fail"] + verdicts["crashed"],
               "errors": verdicts["error"], "skipped": verdicts["skip"],
               "checks": ",".join(sorted(checks)) or None}
        if row["run"]:
            row["can_implement"] = "accepts" + (
                f" (rejects {sum(rejects.values())} cases: {rejects.most_common(1)[0][0]})"
                if rejects else "")
        elif rejects:
            row["can_implement"] = "rejects: " + rejects.most_common(1)[0][0]
        else:
            row["can_implement"] = "not evaluated"
        row["status"] = _status(row, other)
        rows.append(row)
    return rows


def _status(row: dict, other: Counter) -> str:
    if row["failed"]:
        return f"VIOLATION: accepted but {row['failed']} cases fail"
    if row["errors"]:
        return f"incomplete: {row['errors']} errors"
    if row["run"]:
        return "conforms"
    if row["can_implement"].startswith("rejects"):
        return "rejected (never wrong numbers)"
    return f"not run ({other.most_common(1)[0][0] if other else 'no cases'})"


_STATUS_KEYS = (("conforms", "conforms"), ("VIOLATION", "violations"),
                ("incomplete", "incomplete"), ("rejected", "rejected"), ("not run", "not_run"))


def capability_summary(rows: list[dict]) -> dict:
    """Counts over :func:`capability_table` rows: rows per status class and case totals."""
    out = {"rows": len(rows), **{k: 0 for _, k in _STATUS_KEYS},
           "cases": sum(r["cases"] for r in rows), "cases_run": sum(r["run"] for r in rows),
           "cases_failed": sum(r["failed"] for r in rows)}
    for r in rows:
        out[next(k for p, k in _STATUS_KEYS if r["status"].startswith(p))] += 1
    return out


# --- Markdown --------------------------------------------------------------------------------

def _cell(v, limit: int = 80) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        v = "; ".join(v)
    s = str(v).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _short_how(how: str | None) -> str | None:
    """``drops_how`` for a cell: file names without directories, no owner or bracket note."""
    if how is None:
        return None
    how = re.sub(r"vllm/(?:[\w.]+/)+", "", how)
    return re.sub(r" \([A-Za-z0-9_]+\.\w+\)| \[.*\]$", "", how)


def _table(cols: list[tuple[str, str, int]], rows: list[dict]) -> list[str]:
    out = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(k), n) for k, _, n in cols) + " |")
    return out


def markdown_tables(selection_rows: list[dict], capability_rows: list[dict]) -> str:
    """The two tables as Markdown, each after a one-paragraph explanation."""
    out = ["## vLLM kernel selection", "",
           "Which FP8 linear kernel class vLLM 0.33 selects for each platform and loader scheme, "
           "walking that platform's priority list as `choose_scaled_mm_linear_kernel` does and "
           "calling each class's real `can_implement` here. On the platform this report ran on, "
           "`is_supported` was called too (`measured`). For the other platforms it cannot be "
           "evaluated off the device, so it is taken as true (`assumed (off-platform)`): the "
           "selection shown is what vLLM would pick if every listed class were available there, "
           "not something observed on that hardware. *Drops act quant* says whether the selected "
           "class serves a W8A8 scheme without quantizing the activations; `measured` means the "
           "class ran on a tiny layer here (XPU classes over the CPU op emulation with "
           "`is_supported` overridden, activations quantized by vLLM's native CPU path), "
           "`from source` cites the vLLM code read instead. *Drop-act-quant fallbacks* are other "
           "classes of the list that accept the scheme but leave the activations unquantized "
           "(from source); vLLM picks one where it is supported and the classes before it are "
           "not. `can_implement` was asked about an "
           f"N={WEIGHT_SHAPE[0]}, K={WEIGHT_SHAPE[1]} bf16 layer.", ""]
    out += _table([("platform", "platform", 8), ("path", "path", 6), ("scheme", "scheme", 32),
                   ("selected", "selected", 48), ("is_supported", "is_supported", 24),
                   ("drops_act_quant", "drops act quant", 5), ("how", "how", 100),
                   ("note", "note", 200)],
                  [{**r, "how": _short_how(r.get("drops_how"))} for r in selection_rows])
    kernels = ", ".join(f"`{k}`" for k in sorted({r["kernel"] for r in capability_rows}))
    out += ["", "## vLLM kernel capability vs conformance", "",
            f"One row per scheme of a `--backend=vllm:<Class>` run ({kernels or 'no layer cases'})"
            ". `can_implement` is what the "
            "class said about the scheme's config. A class that rejects a scheme never produces "
            "wrong numbers for it; one that accepts it promises correct results. A **VIOLATION** "
            "is a scheme the class accepted and then got wrong (cases failing the error bound, or "
            "the kernel raising or crashing): vLLM would select it and serve bad output. "
            "`not run` rows were skipped for a reason other than `can_implement` (the suite's own "
            "capability rules, or `is_supported`).", ""]
    out += _table([("w", "w", 8), ("a", "a", 10), ("format", "fmt", 14),
                   ("x", "x", 5), ("out", "out", 5), ("cases", "cases", 6), ("passed", "pass", 6),
                   ("failed", "fail", 6), ("skipped", "skip", 6),
                   ("can_implement", "can_implement", 70), ("status", "status", 70)],
                  capability_rows)
    return "\n".join(out) + "\n"


def report_tables(backend: str, records: list[dict], selection: bool = True) -> dict:
    """The tables a ``vllm:<Class>`` run adds to its tolerance report (empty for other
    backends). A table that cannot be computed becomes a ``table_errors`` row, never a lost
    report."""
    if not backend.startswith("vllm:"):
        return {}
    tables: dict = {}
    errors = []
    makers = [("vllm_capability", lambda: capability_table(records, backend.split(":", 1)[1]))]
    if selection:
        makers.append(("vllm_selection", selection_table))
    for name, make in makers:
        try:
            tables[name] = make()
        except Exception as exc:  # noqa: BLE001 - reported in the table's place
            errors.append({"table": name, "error": f"{type(exc).__name__}: {exc}"})
    if errors:
        tables["table_errors"] = errors
    return tables
