"""``torch.ops._xpu_C.fp8_gemm`` of vllm-xpu-kernels (oneDNN on Intel XPU), at op level.

The op (``docs/vllm-0.33-notes.md`` §6.1-6.2)::

    fp8_gemm(Tensor A, Tensor B, ScalarType? out_dtype, Tensor? A_scale_,
             Tensor? B_scale_, Tensor? bias_) -> Tensor

The capability is written from that contract (``csrc/xpu/onednn/onednn_matmul.cpp`` and
``fp8_gemm_w8a8.h``), not measured: no XPU was available. The first XPU run must confirm it
(an accepted-but-wrong case fails; a rejection shows up as "kernel raised").

- A and B of the same FP8 type, ``float8_e4m3fn`` or ``float8_e5m2`` (TORCH_CHECK ``a_st == b_st``);
- output bf16 or fp16 only (TORCH_CHECK; fp32 is rejected);
- B is ``[K, N]``: ``is_nt = B.stride(-2) == 1`` picks the oneDNN transpose, so the ``[K,N]``
  column-major view (``kn-t``) and ``[K,N]`` row-major (``kn``) both work. An ``[N,K]`` weight
  (``nk``) is declared unsupported: the op would read it as ``[K,N]`` and, when K == N,
  silently compute ``A @ W``;
- A scale: numel 1 is per-tensor; otherwise per-token, one value per row read from contiguous
  memory: ``[]``, ``[1]``, ``[M,1]``. (A 2-D scale with more than one column takes the block
  route, which no op case uses);
- B scale: numel 1 is per-tensor; otherwise per-channel, N values in memory order: ``[]``,
  ``[1]``, ``[N]``, ``[1,N]`` and ``[N,1]`` all mean the same thing to ``fp8_gemm``;
- scales and bias must be contiguous; scales are handed over as contiguous float32 in the
  case's shape, bias ``[N]`` as bf16, fp16 or fp32 (``get_bias_type``);
- M == 0 is accepted: ``check_and_create_output_tensor`` creates the empty ``[0, N]`` result and
  nothing in the op rejects m == 0 before oneDNN (no early return either), so the case checks
  that the kernel returns that empty ``[0, N]`` tensor instead of raising.

Every input is handed over exactly in the case's layout and shapes; nothing is transposed or
reshaped here.

Emulation: with ``emulate = True`` (the suite's ``--emulate-xpu``) the same op name runs on
``cpu`` through the CPU contract emulation that ``kernel.xpu_emulation.install()`` registers.
``emulated`` is then True and reports label the results "emulated", never XPU.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from itertools import product

from golden.cases import SA_SHAPES, SB_SHAPES, CaseData

from . import torch_inputs as ti
from .base import Adapter, Capability, KernelRun, Unsupported
from .registry import register
from .timing import timed_call
from .torch_inputs import require_torch

__all__ = ["XpuOpsAdapter", "CAPABILITY", "OP_MODULE"]

OP_MODULE = "vllm_xpu_kernels._xpu_C"  # importing it registers torch.ops._xpu_C.*
_HOW = ("install vllm-xpu-kernels on a machine with an Intel XPU, or pass --emulate-xpu to run "
        "the CPU contract emulation (kernel/xpu_emulation.py; results labelled emulated)")

CAPABILITY = Capability(
    levels=frozenset({"op"}),
    formats=frozenset({("e4m3fn", "e4m3fn"), ("e5m2", "e5m2")}),
    outs=frozenset({"bf16", "fp16"}),
    biases=frozenset({None, "bf16", "fp16", "fp32"}),
    layouts=frozenset({"kn-t", "kn"}),
    scale_pairs=frozenset(product(SA_SHAPES, SB_SHAPES)),  # all: numel decides (see above)
    # Not measured (no XPU here): oneDNN's f8 matmul accumulates in f32, as torch's oneDNN
    # path does on cpu. The CPU emulation is exact and is judged by the exact profile.
    profile="fp32",
)


@lru_cache(maxsize=1)
def _real_op_missing() -> str | None:
    """Why the real op cannot run here (None when it can): import error or no XPU device."""
    return ti.xpu_module_missing(OP_MODULE)


def _emulation():
    """``kernel.xpu_emulation`` with its ops installed (``install()`` is idempotent and refuses
    to shadow a real ``_xpu_C`` op: that refusal becomes the skip reason)."""
    try:
        from . import xpu_emulation
    except ImportError as exc:
        raise Unsupported(f"--emulate-xpu needs kernel/xpu_emulation.py ({exc})") from None
    try:
        xpu_emulation.install()
    except RuntimeError as exc:
        raise Unsupported(f"--emulate-xpu: {exc}") from None
    return xpu_emulation


@register("xpu-ops")
class XpuOpsAdapter(Adapter):
    description = "torch.ops._xpu_C.fp8_gemm (vllm-xpu-kernels, oneDNN)"

    def __init__(self, emulate: bool = False):
        self.emulate = emulate

    @property
    def emulate(self) -> bool:
        """Run the CPU contract emulation on ``cpu`` instead of the real op on ``xpu``."""
        return self._emulate

    @emulate.setter
    def emulate(self, on: bool) -> None:
        self._emulate = self.emulated = bool(on)
        self.description = (
            "CPU contract emulation of torch.ops._xpu_C.fp8_gemm (not an XPU result)" if on
            else type(self).description)

    def set_emulation(self, on: bool) -> None:
        """``--emulate-xpu``: run on cpu over the contract emulation (labelled emulated)."""
        self.emulate = on

    def devices(self) -> list[str]:
        if self.emulate:
            return ["cpu"]
        return [] if _real_op_missing() else ["xpu"]

    def why_unavailable(self, device: str) -> str | None:
        if device in self.devices():
            return None
        if self.emulate:
            return (f"backend 'xpu-ops' with --emulate-xpu runs the CPU contract emulation on "
                    f"'cpu' only, not on {device!r}")
        missing = _real_op_missing()
        if missing:
            return f"backend 'xpu-ops': {missing}; {_HOW}"
        return (f"backend 'xpu-ops' runs the real op on 'xpu' only, not on {device!r}; "
                "pass --emulate-xpu for the CPU contract emulation")

    def capability(self, device: str) -> Capability:
        # The op's contract; the emulation implements the same contract and computes the
        # exact result, so its runs are held to the exact profile.
        return dataclasses.replace(CAPABILITY, profile="exact") if self.emulate else CAPABILITY

    def inputs(self, data: CaseData, device: str) -> tuple:
        """The positional arguments of ``fp8_gemm``, as tensors on ``device``."""
        c = data.case
        return (ti.fp8(data.a, c.fmt_a, device), ti.fp8_b(data, device),
                ti.dtype(c.out), ti.f32(data.scale_a, device), ti.f32(data.scale_b, device),
                ti.bias(data, device))

    def run(self, data: CaseData, device: str, reps: int = 0) -> KernelRun:
        why = self.why_unavailable(device)
        if why:
            raise Unsupported(why)
        torch = require_torch()
        note = getattr(_emulation(), "LABEL", "emulated") if self.emulate else ""
        op = torch.ops._xpu_C.fp8_gemm
        args = self.inputs(data, device)
        y, seconds = timed_call(lambda: op(*args), device, reps)
        return KernelRun(ti.values(y), seconds, note)
