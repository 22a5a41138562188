"""What the machine computes fast: native bfloat16 (AVX512-BF16 or AMX on a CPU, or a GPU), and
int8 matrix products and convolutions (VNNI or AMX); and the one thread the prior's small
operations run on."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=8)
def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively; elsewhere it is emulated, and slower than float32.

    On a CPU that means AVX512-BF16 or AMX. oneDNN's own check (``_is_mkldnn_bf16_supported``)
    also accepts plain AVX-512, where it emulates bfloat16 at several times float32's cost
    (docs/speed.md, "Measurements behind the code's choices").
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(flag() for flag in flags if flag is not None)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread: the prior's per-wavefront operations are too small to gain from
    more, and on a busy machine intra-op thread pools waiting on each other make them far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _best_seconds(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@lru_cache(maxsize=1)
def int8_matmul_fast() -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32) beats float32 products on this CPU.

    With VNNI or AMX it is several times faster; on a CPU with only AVX2 it is far slower than
    float32. Both are exact for the prior's integer layers, so the choice changes speed and
    never a bit: a one-off micro-benchmark of the prior's shape decides, on one thread as the
    prior runs (on two, thread wake-ups can make it pick the slower path). Where the CPU says it
    has AVX512-VNNI or AMX, no benchmark: a stall during its microseconds on a busy machine
    could pick float32 there (the measurements: docs/speed.md).
    """
    if not hasattr(torch, "_int_mm"):
        return False
    flags = (getattr(torch.cpu, name, None) for name in ("_is_vnni_supported", "_is_amx_tile_supported"))
    if any(flag() for flag in flags if flag is not None):
        return True
    a = torch.randint(-128, 128, (256, 128), dtype=torch.int8)
    w = torch.randint(-127, 128, (128, 256), dtype=torch.int8)
    af, wf, bias = a.float(), w.float(), torch.zeros(256)
    with one_thread(), torch.inference_mode():
        return _best_seconds(lambda: torch._int_mm(a, w), 5) < _best_seconds(lambda: torch.addmm(bias, af, wf), 5)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what ``platform`` knows), for
    reports: ``platform.processor()`` alone is empty on Linux."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a measurement ran on: CPU, cores, torch and the fast paths the codec takes there."""
    cpu = torch.device("cpu")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "bf16_networks": bf16_supported(cpu),
        "int8_prior": int8_matmul_fast(),
    }
