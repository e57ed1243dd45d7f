"""Backends by name. ``get_backend`` gives clear errors; ``default_backend`` picks what the
machine has (xpu, then cuda, then cpu) for the torch backend, else the reference."""

from __future__ import annotations

from collections.abc import Callable

from .base import Adapter

__all__ = ["BACKENDS", "register", "get_backend", "default_backend_and_device", "backend_names"]

BACKENDS: dict[str, Callable[[], Adapter]] = {}


def register(name: str):
    """Class decorator: make an adapter available as ``--backend=name``."""

    def deco(cls):
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    from . import (  # noqa: F401  (registration side effect)
        broken,
        ipex_ops,
        reference,
        synthetic,
        torch_scaled_mm,
        xpu_ops,
    )


# Backend families take an argument after a colon: ``vllm:<KernelClass>``, ``mutant:<name>``.
FAMILIES = {"vllm": ("kernel.vllm_linear", "VllmLinearAdapter", "<KernelClass>"),
            "mutant": ("kernel.mutants", "get_mutant", "<name>")}


def backend_names() -> list[str]:
    _load_builtin()
    return sorted(BACKENDS) + [f"{fam}:{arg}" for fam, (_, _, arg) in sorted(FAMILIES.items())]


def get_backend(name: str) -> Adapter:
    """An adapter instance by name (``family:arg`` for families); an unknown name lists the
    valid ones."""
    _load_builtin()
    family, colon, arg = name.partition(":")
    if colon and family in FAMILIES:
        import importlib

        module, cls, _ = FAMILIES[family]
        return getattr(importlib.import_module(module), cls)(arg)
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}"
        ) from None


def default_backend_and_device() -> tuple[str, str]:
    """The best backend and device on this machine: torch on xpu > cuda > cpu, else reference."""
    _load_builtin()
    try:
        torch_backend = get_backend("torch")
        devices = torch_backend.devices()
    except Exception:  # torch missing or broken: the reference still runs
        devices = []
    if devices:
        return "torch", devices[0]
    return "reference", "cpu"


def enable_xpu_emulation(adapter: Adapter, name: str) -> None:
    """Switch ``adapter`` (backend ``name``) to the XPU op contract emulation; ValueError for
    a backend that does not call the XPU ops (RuntimeError from the adapter when the real op
    is present and would be shadowed)."""
    if not hasattr(adapter, "set_emulation"):
        raise ValueError(f"--emulate-xpu: backend {name!r} does not call the XPU ops; it "
                         "applies to vllm:XPU* classes and xpu-ops")
    adapter.set_emulation(True)
