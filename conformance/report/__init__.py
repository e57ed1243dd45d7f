"""Tolerance reports: the versioned JSON schema, Markdown and HTML renderings, diff and merge.

``python -m conformance.report {diff,merge,render,schema}``; see ``__main__``.
"""

from .schema import SCHEMA_VERSION, ReportError, load

__all__ = ["SCHEMA_VERSION", "ReportError", "load"]
