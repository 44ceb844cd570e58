"""benchmarks/fom_speed.py: the CPU every benchmark quotes with its timings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fom_speed import describe_cpu  # noqa: E402


def lscpu(name: str, family: int, model: int, flags: str) -> str:
    """The lines of ``lscpu``'s output that :func:`describe_cpu` reads, among others."""
    return (f"Architecture:  x86_64\nCPU(s):  2\nModel name:  {name}\n"
            f"CPU family:  {family}\nModel:  {model}\nFlags:  fpu sse2 {flags}\n")


ZEN3 = lscpu("AMD EPYC", 25, 1, "avx fma avx2 bmi2")
XEON = lscpu("Intel Xeon Processor", 6, 167, "avx fma avx2 bmi2 avx512f avx512dq avx512_vnni")


def test_cpu_named_with_family_model_and_vector_width() -> None:
    assert describe_cpu(ZEN3) == "AMD EPYC (family 25, model 1; AVX2)"
    assert describe_cpu(XEON) == "Intel Xeon Processor (family 6, model 167; AVX-512)"


def test_cpu_without_lscpu_details() -> None:
    # no lscpu (or an unreadable one): the fallback name, no empty parentheses
    assert describe_cpu("", "x86_64") == "x86_64"
    assert describe_cpu("Model name: Some CPU\nCPU family: -\n") == "Some CPU"
