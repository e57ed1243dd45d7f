"""The report envelope: what ran, where, with which versions. Never imports vllm (versions
come from package metadata), and every probe of the machine degrades to null, never an error."""

from __future__ import annotations

import datetime
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from kernel.peaks import peak_tflops

__all__ = ["make_envelope", "run_fields", "versions", "device_info", "git_info", "peak_fields"]

_ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = ("numpy", "ml_dtypes", "torch", "vllm", "pytest", "pytest-xdist")


def versions() -> dict:
    """Installed versions of the packages a report depends on (null where not installed)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name.removeprefix("pytest-") if name == "pytest-xdist" else name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    from golden import GENERATOR_VERSION, REFERENCE_VERSION

    out["golden_reference"] = REFERENCE_VERSION
    out["golden_generator"] = GENERATOR_VERSION
    return out


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_info() -> dict:
    """The checkout's revision and whether it has uncommitted changes."""
    rev = _run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"])
    status = _run(["git", "-C", str(_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {"revision": rev, "dirty": bool(status) if rev else None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_info(device: str) -> dict:
    """``device_name``, ``driver`` and ``runtime`` for ``device`` (null where unknown)."""
    try:
        import torch
    except ImportError:
        torch = None
    if device == "cuda" and torch is not None and torch.cuda.is_available():
        driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        runtime = (f"CUDA {torch.version.cuda}" if torch.version.cuda
                   else f"HIP {getattr(torch.version, 'hip', None)}")
        return {"device_name": torch.cuda.get_device_name(0),
                "driver": driver.splitlines()[0] if driver else None, "runtime": runtime}
    if device == "xpu" and torch is not None and hasattr(torch, "xpu") and torch.xpu.is_available():
        props = torch.xpu.get_device_properties(0)
        return {"device_name": props.name, "driver": getattr(props, "driver_version", None),
                "runtime": f"XPU {getattr(torch.version, 'xpu', None)}"}
    runtime = None
    if torch is not None:
        m = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())
        runtime = f"oneDNN {m.group(1)}" if m else None
    return {"device_name": _cpu_name(), "driver": None, "runtime": runtime}


def peak_fields(device_name: str) -> dict:
    """``peak_tflops`` and ``peak_source``: the device's published dense FP8 peak for
    e4m3 x e4m3 (``kernel.peaks``), both null where none is known."""
    found = peak_tflops(device_name, "e4m3fn", "e4m3fn")
    peak, source = found or (None, None)
    return {"peak_tflops": peak, "peak_source": source}


def run_fields(adapter, device: str) -> dict:
    """The envelope's fields about the kernel and the device it ran on: backend, kernel,
    emulation, accumulation profile, device, its name, driver, runtime and FP8 peak. They
    need the backend's libraries (torch), so an xdist worker computes them for its
    controller."""
    why = adapter.why_unavailable(device)
    device_fields = device_info(device)
    return {
        "backend": adapter.name,
        "kernel": adapter.description,
        "emulated": bool(adapter.emulated),
        "profile": "unavailable" if why else adapter.profile(device).name,
        "device": device,
        **device_fields,
        **peak_fields(device_fields["device_name"]),
    }


def make_envelope(*, adapter=None, device: str | None = None, run: dict | None = None,
                  grid: str, seed: int, shard: str | None, golden: bool, timing_reps: int,
                  command: str, date: datetime.datetime | None = None) -> dict:
    """The envelope of a run (``counts`` and ``merged_from`` are filled when records are
    known), from ``run`` (``run_fields``) or else from ``adapter`` and ``device``."""
    if run is None:
        if adapter is None or device is None:
            raise TypeError("make_envelope needs run=run_fields(...) or both adapter and device")
        run = run_fields(adapter, device)
    return {
        **run,
        "versions": versions(),
        "git": git_info(),
        "grid": grid,
        "seed": seed,
        "shard": shard,
        "merged_from": [],
        "golden": golden,
        "timing_reps": timing_reps,
        "command": command,
        "date": (date or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds"),
        "counts": {},
    }
