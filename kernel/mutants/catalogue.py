"""The mutant table: name -> class, filled by the ``@mutant`` decorator in the modules that
define them (``scales``, ``arithmetic``, ``plumbing``, ``quantization``)."""

from __future__ import annotations

__all__ = ["MUTANTS", "mutant"]

MUTANTS: dict[str, type] = {}


def mutant(name: str):
    """Class decorator: add a :class:`~kernel.mutants.base.Mutant` to the catalogue as
    ``name`` (its backend name is ``mutant:<name>``)."""

    def deco(cls):
        cls.name = f"mutant:{name}"
        cls.short = name
        MUTANTS[name] = cls
        return cls

    return deco
