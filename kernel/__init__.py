"""Kernels under test: adapters (one small module per kernel family) and their registry.

``kernel`` may import ``golden`` (codecs, case data) but never ``conformance``.
"""

from .base import Adapter, Capability, KernelRun, Unsupported
from .registry import backend_names, default_backend_and_device, get_backend, register

__all__ = ["Adapter", "Capability", "KernelRun", "Unsupported", "backend_names",
           "default_backend_and_device", "get_backend", "register"]
