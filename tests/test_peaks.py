"""``kernel/peaks.py``: the published dense FP8 peaks, looked up by the device name torch gives."""

from __future__ import annotations

import re

import pytest

from kernel.peaks import FP8_FORMATS, PEAKS, find_peak, peak_tflops

# Device names as torch.cuda.get_device_name() spells them (and spellings a driver might use),
# with NVIDIA's dense FP8 figure: the datasheet's "with sparsity" TFLOPS halved.
DATASHEET = {
    "NVIDIA H100 80GB HBM3": ("H100 SXM", 3958 / 2),
    "NVIDIA H100 SXM5 80GB": ("H100 SXM", 3958 / 2),
    "NVIDIA H100 PCIe": ("H100 PCIe", 3026 / 2),
    "NVIDIA H100 NVL": ("H100 NVL", 3341 / 2),
    "NVIDIA H200": ("H200 SXM", 3958 / 2),
    "NVIDIA H200 NVL": ("H200 NVL", 3341 / 2),
    "NVIDIA H800": ("H800 SXM", 3958 / 2),
    "NVIDIA H800 PCIe": ("H800 PCIe", 3026 / 2),
    "NVIDIA L40S": ("L40S", 1466 / 2),
    "NVIDIA L4": ("L4", 485 / 2),
}
NO_PEAK = [
    "Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC 9654 96-Core Processor", "test cpu", "x86_64",
    "unknown cpu", "NVIDIA A100-SXM4-80GB", "NVIDIA L40", "NVIDIA GeForce RTX 4090",
    "AMD Instinct MI300X", "Intel(R) Data Center GPU Max 1550", "NVIDIA H100", "",
]


@pytest.mark.parametrize("name", list(DATASHEET))
def test_known_device_names_find_their_part(name):
    part, dense = DATASHEET[name]
    row = find_peak(name)
    assert row is not None and row.part == part, (name, row)
    assert peak_tflops(name, "e4m3fn", "e4m3fn") == (dense, row.source), name


@pytest.mark.parametrize("name", NO_PEAK)
def test_cpus_and_unlisted_devices_have_no_peak(name):
    assert find_peak(name) is None, (name, find_peak(name))
    assert peak_tflops(name, "e4m3fn", "e4m3fn") is None


@pytest.mark.parametrize(("fmt_a", "fmt_b"), [
    ("e4m3fn", "e4m3fn"), ("e5m2", "e5m2"), ("e4m3fn", "e5m2"), ("e5m2", "e4m3fn"), ("e4m3", "e4m3"),
])
def test_one_peak_for_every_ocp_fp8_pair(fmt_a, fmt_b):
    for name, (_, dense) in DATASHEET.items():
        found = peak_tflops(name, fmt_a, fmt_b)
        assert found is not None and found[0] == dense, (name, fmt_a, fmt_b, found)


@pytest.mark.parametrize(("fmt_a", "fmt_b"), [
    ("bf16", "e4m3fn"), ("fp16", "e5m2"), ("e4m3fnuz", "e4m3fnuz"), ("e4m3fn", "e5m2fnuz"),
])
def test_formats_the_parts_do_not_multiply_have_no_peak(fmt_a, fmt_b):
    assert peak_tflops("NVIDIA H100 80GB HBM3", fmt_a, fmt_b) is None


@pytest.mark.parametrize("row", PEAKS, ids=lambda p: p.part)
def test_each_row_is_half_the_sparse_figure_its_source_cites(row):
    m = re.search(r"FP8 Tensor Core ([\d,]+) TFLOPS with sparsity", row.source)
    assert m, row.source
    assert row.tflops == int(m.group(1).replace(",", "")) / 2, row
    assert "datasheet" in row.source and row.formats == FP8_FORMATS, row


def test_every_row_is_reachable_and_named_once():
    parts = [p.part for p in PEAKS]
    assert len(set(parts)) == len(parts), parts
    assert {part for part, _ in DATASHEET.values()} == set(parts), "a row without a test name"
