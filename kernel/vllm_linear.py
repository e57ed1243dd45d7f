"""vLLM's FP8 linear-kernel classes through their public interface: ``--backend=vllm:<Class>``.

For a ``layer`` case the adapter does what vLLM's FP8 loaders and linear method do
(``docs/vllm-0.33-notes.md`` §1.4):

1. ``FP8ScaledMMLinearLayerConfig`` from the case's scheme (weight key
   ``kFp8StaticTensorSym`` / ``kFp8StaticChannelSym``, activation key static /
   dynamic-tensor / dynamic-token), ``weight_shape=(N, K)``, input and output dtypes;
2. ``is_supported()`` and ``can_implement(config)``: a refusal is a skip carrying vLLM's own
   reason, never a number;
3. a ``torch.nn.Module`` holding ``weight`` in the case's layout (``kn-t``: the ``.t()`` view of
   the ``[N,K]`` checkpoint, what ``fp8.py`` hands over; ``kn``: ``[K,N]`` contiguous; ``nk``:
   the ``[N,K]`` checkpoint itself), ``weight_scale`` in the case's shape, ``input_scale``
   (static) and ``input_scale_ub`` (None);
4. the kernel's constructor, ``process_weights_after_loading(layer)``, then
   ``apply_weights(layer, x, bias)``; ``x`` is 3-D ``[1, M, K]`` when M is odd and 2-D
   otherwise, so both paths run across a grid.

vLLM quantizes the activations itself; the reference quantizes the same ``x`` by vLLM's native
convention (``golden.quant``), so any difference is the kernel's. All of this runs under a
``VllmConfig`` with compilation mode NONE (eager ``QuantFP8.forward_native``, 17-row padding
for the torch kernels) and ``VLLM_TARGET_DEVICE=cpu`` unless set otherwise.
"""

from __future__ import annotations

import importlib
import os
import time

import numpy as np

from golden.cases import Case, CaseData

from . import torch_inputs as ti
from .base import Adapter, Capability, KernelRun, Unsupported

__all__ = ["VllmLinearAdapter", "KERNEL_MODULES", "load_kernel_class", "W_KEY", "A_KEY",
           "eager_vllm_config", "layer_config", "emulated"]

KERNEL_MODULES = (
    "vllm.model_executor.kernels.linear.scaled_mm.pytorch",
    "vllm.model_executor.kernels.linear.scaled_mm.xpu",
    "vllm.model_executor.kernels.linear.scaled_mm.cpu",
    "vllm.model_executor.kernels.linear.scaled_mm.cutlass",
)
W_KEY = {"tensor": "kFp8StaticTensorSym", "channel": "kFp8StaticChannelSym",
          "block": "kFp8Static128BlockSym"}
# a=none: the weight-only loader's activation key (compressed_tensors_w8a16_fp8.py:49, dynamic)
A_KEY = {"static": "kFp8StaticTensorSym", "dyn-tensor": "kFp8DynamicTensorSym",
          "dyn-token": "kFp8DynamicTokenSym", "none": "kFp8DynamicTensorSym",
          "group": "kFp8Dynamic128Sym"}
_SCHEMES = frozenset({(w, a) for w in ("tensor", "channel")
                      for a in ("static", "dyn-tensor", "dyn-token", "none")} | {("block", "group")})
# The weight_scale shapes vLLM's loaders produce (fp8.py: 0-D after .max(); compressed-tensors:
# [N,1]; [1] and [N] are the other shapes a checkpoint can carry).
_LOADER_SB = {"tensor": ("[]", "[1]"), "channel": ("[N,1]", "[N]"), "block": ("[Nb,Kb]",)}
_PARAM_NAMES = ["weight", "weight_scale", "input_scale", "input_scale_ub"]


def _vllm():
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    try:
        import vllm  # noqa: F401
        from vllm.config import CompilationConfig, CompilationMode, VllmConfig
    except ImportError as exc:
        raise Unsupported(f"vllm is not importable ({exc}); use the tox environment `vllm` "
                          "(vllm==0.33.0 --no-deps plus its kernel modules' imports)") from None
    return VllmConfig, CompilationConfig, CompilationMode


def load_kernel_class(name: str):
    """The kernel class ``name`` from vLLM's scaled-mm kernel modules (clear error if absent)."""
    _vllm()
    tried = []
    for mod in KERNEL_MODULES:
        try:
            m = importlib.import_module(mod)
        except ImportError as exc:
            tried.append(f"{mod} ({exc})")
            continue
        if hasattr(m, name):
            return getattr(m, name)
        tried.append(mod)
    raise Unsupported(f"no vLLM kernel class {name!r} in {', '.join(tried)}")


def eager_vllm_config():
    """The context vLLM's kernels need (``set_current_vllm_config``), compilation mode NONE:
    eager ``QuantFP8.forward_native`` and the torch kernels' 17-row padding."""
    VllmConfig, CompilationConfig, CompilationMode = _vllm()
    from vllm.config import set_current_vllm_config

    return set_current_vllm_config(
        VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE)))


def layer_config(w_key: str, a_key: str, weight_shape, input_dtype, out_dtype):
    """``FP8ScaledMMLinearLayerConfig`` from quant_utils key names (:data:`W_KEY` values),
    ``weight_shape`` (N, K) as the loaders pass it."""
    from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import (
        FP8ScaledMMLinearLayerConfig,
    )
    from vllm.model_executor.layers.quantization.utils import quant_utils as qu

    return FP8ScaledMMLinearLayerConfig(
        weight_quant_key=getattr(qu, w_key), activation_quant_key=getattr(qu, a_key),
        weight_shape=tuple(weight_shape), input_dtype=input_dtype, out_dtype=out_dtype)


def emulated(cls):
    """``cls`` with ``is_supported`` true off XPU (the --emulate-xpu contract emulation): a
    subclass, so vLLM's class itself is untouched and its other methods run as they are."""
    if cls not in _EMULATED:
        _EMULATED[cls] = type(cls.__name__, (cls,), {
            "is_supported": classmethod(lambda c, compute_capability=None: (True, None)),
            "__doc__": f"{cls.__name__} with is_supported forced true (--emulate-xpu)"})
    return _EMULATED[cls]


_EMULATED: dict = {}


def _block_base():
    from vllm.model_executor.kernels.linear.scaled_mm.BlockScaledMMLinearKernel import (
        Fp8BlockScaledMMLinearKernel,
    )

    return Fp8BlockScaledMMLinearKernel


def weight_only_classes() -> set[str]:
    """Names of the classes vLLM serves weight-only (W8A16) layers with, on any platform."""
    from vllm.model_executor.kernels import linear

    return {k.__name__ for ks in linear._POSSIBLE_WFP8A16_KERNELS.values() for k in ks}


def _no_weight_processing(cls) -> bool:
    """Whether ``cls`` keeps the base class's no-op ``process_weights_after_loading``."""
    from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import (
        FP8ScaledMMLinearKernel,
    )

    return cls.process_weights_after_loading is FP8ScaledMMLinearKernel.process_weights_after_loading


class VllmLinearAdapter(Adapter):
    """One vLLM kernel class (``--backend=vllm:<Class>``)."""

    family = "vllm"
    description = "vLLM FP8ScaledMMLinearKernel subclass through its layer interface"

    emulate = False  # --emulate-xpu: XPU classes run on CPU over kernel.xpu_emulation

    def __init__(self, kernel_class: str):
        if not kernel_class.isidentifier():
            raise ValueError(f"vllm:{kernel_class!r}: expected a class name, e.g. "
                             "vllm:PerTensorTorchFP8ScaledMMLinearKernel")
        self.kernel_class = kernel_class
        self.name = f"vllm:{kernel_class}"
        try:
            _vllm()
        except Unsupported:
            pass  # no vllm here: every case skips with that reason (why_unavailable)
        else:
            try:
                load_kernel_class(kernel_class)
            except Unsupported as exc:
                raise ValueError(str(exc)) from None
        self.description = f"vLLM {kernel_class} (process_weights_after_loading + apply_weights)"

    @property
    def calls_xpu_ops(self) -> bool:
        """vLLM's XPU classes call ``torch.ops._xpu_C``: they can run on the emulation."""
        return self.kernel_class.startswith("XPU")

    def set_emulation(self, on: bool) -> None:
        """Run the XPU classes on CPU through the contract emulation (labelled emulated)."""
        if on and not self.calls_xpu_ops:
            raise ValueError(f"--emulate-xpu: {self.name} does not call the XPU ops; it "
                             "applies to vllm:XPU* classes and xpu-ops")
        if on:
            from . import xpu_emulation

            xpu_emulation.install()
            self.description += f" [{xpu_emulation.LABEL}]"
        self.emulate = self.emulated = on

    def devices(self) -> list[str]:
        try:
            _vllm()
        except Unsupported:
            return []
        return ["cpu"]

    def why_unavailable(self, device: str) -> str | None:
        try:
            _vllm()
        except Unsupported as exc:
            return str(exc)
        return super().why_unavailable(device)

    def capability(self, device: str) -> Capability:
        # The class decides schemes through can_implement at run time; the table holds what no
        # FP8 loader ever hands a kernel (op-level inputs, non-platform formats, other shapes).
        return Capability(
            levels=frozenset({"layer"}),
            formats=frozenset({("e4m3fn", "e4m3fn")}),  # vLLM quantizes to the platform's e4m3fn
            layouts=frozenset({"kn-t", "kn", "nk"}),
            schemes=_SCHEMES,
            # Under --emulate-xpu the op is the exact reference, so the class's own handling
            # is all that can differ: judged exactly. Otherwise oneDNN / torch: fp32.
            profile="exact" if self.emulate else "fp32",
            rules=(
                (lambda c: c.sb in _LOADER_SB[c.w],
                 "vLLM's FP8 loaders hand weight_scale as 0-D/[1] (per tensor) or [N,1]/[N] "
                 "(per channel), never this shape"),
                (lambda c: c.edge == "", "edge-condition inputs are op-level checks"),
                (lambda c: c.w != "block" or c.layout == "nk",
                 "vLLM's block-FP8 path keeps the [N,K] checkpoint (process_fp8_weight_block_"
                 "strategy: no transpose); it is never handed another layout"),
            ),
        )

    # -- building the layer --------------------------------------------------------------
    def _config(self, case: Case):
        return layer_config(W_KEY[case.w], A_KEY[case.a], (case.N, case.K), ti.dtype(case.x),
                            ti.dtype(case.out))

    @staticmethod
    def layer(data: CaseData):
        """The ``torch.nn.Module`` vLLM's loaders would hand the kernel for this case."""
        import torch

        c = data.case
        w = torch.from_numpy(np.asarray(data.b())).view(torch.float8_e4m3fn)  # keeps the layout

        def param(t):
            return torch.nn.Parameter(t, requires_grad=False)

        layer = torch.nn.Module()
        layer.weight = param(w)
        # np.array, not np.ascontiguousarray: the latter turns fp8.py's 0-D scale into [1]
        ws = torch.from_numpy(np.array(data.scale_b, np.float32, order="C"))
        if c.w == "block":  # fp8.py's name for the [Nb,Kb] block scale
            layer.weight_scale_inv = param(ws)
        else:
            layer.weight_scale = param(ws)
        xs = None
        if c.a == "static":
            xs = torch.from_numpy(np.asarray(data.input_scale, np.float32)).clone()
            xs = param(xs.reshape(()) if c.sa == "[]" else xs.reshape(1))
        layer.input_scale = xs
        layer.input_scale_ub = None
        layer.input_size_per_partition = c.K
        layer.output_size_per_partition = c.N
        return layer

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        import torch

        c = data.case
        cls = load_kernel_class(self.kernel_class)
        is_block = issubclass(cls, _block_base())
        name = self.kernel_class
        if (c.w == "block") != is_block:
            raise Unsupported(f"{name} is {'a' if is_block else 'not a'} block-FP8 kernel; "
                              f"vLLM never hands it a w={c.w} layer")
        if c.a == "none" and name not in weight_only_classes():
            raise Unsupported(f"vLLM never hands a weight-only (W8A16) layer to {name}: it "
                              "is in no platform's _POSSIBLE_WFP8A16_KERNELS list")
        if self.emulate:
            cls = emulated(cls)
        with eager_vllm_config():
            cfg = self._config(c)
            ok, why = cls.is_supported()
            if not ok:
                hint = " (--emulate-xpu runs it on CPU over the op contract emulation)" if (
                    self.calls_xpu_ops) else ""
                raise Unsupported(f"{name}.is_supported: {why}{hint}")
            ok, why = cls.can_implement(cfg)
            if not ok:
                raise Unsupported(f"{name}.can_implement rejects: {why}")
            if c.layout == "nk" and not is_block and _no_weight_processing(cls):
                raise Unsupported(f"{name} does no weight processing: vLLM's loaders "
                                  "hand it the [K,N] view (layout kn-t), never the [N,K] checkpoint")
            if c.layout == "kn" and c.K == c.N and not _no_weight_processing(cls):
                raise Unsupported(
                    f"{name} tells [N,K] from [K,N] by shape, and at K == N by contiguity "
                    "(a contiguous square weight is the [N,K] checkpoint): a row-major [K,N] "
                    "square weight cannot be told apart through the layer interface")
            kernel = cls(cfg) if is_block else cls(cfg, layer_param_names=_PARAM_NAMES)
            layer = self.layer(data)
            kernel.process_weights_after_loading(layer)
            x = torch.from_numpy(np.asarray(data.x, np.float32)).to(ti.dtype(c.x))
            if c.M % 2:
                x = x.reshape(1, c.M, c.K)
            bias = ti.bias(data, "cpu")
            if self.emulate:
                from . import xpu_emulation

                xpu_emulation.clear_calls()
            t0 = time.perf_counter()
            y = kernel.apply_weights(layer, x, bias)
            seconds = time.perf_counter() - t0
            note = _op_note(c) if self.emulate else ""
            if reps:
                from .timing import median_seconds

                seconds = median_seconds(lambda: kernel.apply_weights(layer, x, bias), device,
                                         reps, warmup=0)
        want = (*x.shape[:-1], c.N)
        if tuple(y.shape) != want:
            raise RuntimeError(f"apply_weights returned shape {tuple(y.shape)}, expected {want}")
        return KernelRun(ti.values(y.reshape(c.M, c.N)), seconds, note)


def _op_note(case: Case) -> str:
    """What the emulated XPU ops saw (route, A dtype), and whether a W8A8 scheme reached a
    GEMM with unquantized activations (the weight-only kernel serving a W8A8 layer)."""
    from .xpu_emulation import CALLS

    seen = "; ".join(f"_xpu_C.{r['op']} A {r.get('a_dtype')} {r.get('a_shape')}, route "
                     f"{r.get('route')}" for r in CALLS)
    dropped = case.a != "none" and any(r.get("a_dtype") in ("bfloat16", "float16")
                                       for r in CALLS)
    if dropped:
        return (f"activations were never quantized: the W8A8 scheme a={case.a} reached the "
                f"GEMM in {case.x} ({seen})")
    return f"emulated op calls: {seen}"
