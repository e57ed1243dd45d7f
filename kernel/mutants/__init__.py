"""Mutant kernels: the reference with one realistic bug each, to measure the suite's power.

Each mutant (``kernel.mutants.base.Mutant``) wraps the reference, claims the ``fp32`` profile
a production kernel claims, and adds one bug from the history of FP8 GEMMs and of vLLM's XPU
path (DESIGN §1, §4, §9). ``python -m conformance.mutants`` runs the suite against every one
and reports which it kills; ``--backend=mutant:<name>`` runs one through pytest, so a kill
reruns like any failure.

Modules, by what the bug touches: ``scales`` (scale routing, axis, inversion, caching),
``arithmetic`` (accumulation, output rounding, K loop, epilogue), ``plumbing`` (layout, bias,
padding, format dispatch), ``quantization`` (activation quantization of layer cases).
"""

from __future__ import annotations

from . import arithmetic, plumbing, quantization, scales  # noqa: F401  (fill the catalogue)
from .base import Mutant
from .catalogue import MUTANTS

__all__ = ["MUTANTS", "Mutant", "get_mutant", "mutant_names"]


def mutant_names() -> list[str]:
    return list(MUTANTS)


def get_mutant(name: str) -> Mutant:
    """A fresh mutant by short name (the part after ``mutant:``); an unknown name lists them."""
    try:
        return MUTANTS[name]()
    except KeyError:
        raise ValueError(f"unknown mutant {name!r}; mutants: {', '.join(MUTANTS)}") from None
