"""The NumPy reference model of FP8 scaled matmul: codecs, vLLM's quantization convention,
exact accumulation, correctly rounded outputs, per-element error bounds and case inputs.

``golden`` imports neither ``kernel`` nor ``conformance`` (data flows golden -> kernel ->
conformance).
"""

REFERENCE_VERSION = "1"
"""Bumped whenever the reference's output for some case changes on purpose."""

GENERATOR_VERSION = "1"
"""Bumped whenever the bytes of some generated case input change on purpose."""
