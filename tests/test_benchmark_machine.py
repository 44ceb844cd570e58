"""benchmarks/fom_speed.py: the CPU every benchmark quotes with its timings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fom_speed import describe_cpu  # noqa: E402

ZEN3 = """Architecture:                            x86_64
CPU(s):                                  2
Vendor ID:                               AuthenticAMD
Model name:                              AMD EPYC
CPU family:                              25
Model:                                   1
Flags:                                   fpu sse2 avx fma avx2 bmi2
"""
XEON = ZEN3.replace("AuthenticAMD", "GenuineIntel").replace("AMD EPYC", "Intel Xeon Processor") \
    .replace("25", "6").replace("Model:                                   1",
                                "Model:                                   167") \
    .replace("avx2 bmi2", "avx2 bmi2 avx512f avx512dq avx512_vnni")


def test_cpu_named_with_family_model_and_vector_width() -> None:
    assert describe_cpu(ZEN3) == "AMD EPYC (family 25, model 1; AVX2)"
    assert describe_cpu(XEON) == "Intel Xeon Processor (family 6, model 167; AVX-512)"


def test_cpu_without_lscpu_details() -> None:
    # no lscpu (or an unreadable one): the fallback name, no empty parentheses
    assert describe_cpu("", "x86_64") == "x86_64"
    assert describe_cpu("Model name: Some CPU\nCPU family: -\n") == "Some CPU"
