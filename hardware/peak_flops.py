"""The device's measured peak FLOP/s: a GEMM probe, cached per machine, device, precision and threads.

Model FLOPs utilisation (MFU) divides what a model achieves by this figure. It is measured, not
taken from a spec sheet: the best of several large square matrix products.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

_SIZES = {"cpu": 1024, "cuda": 8192, "mps": 4096, "xpu": 4096}


def _probe(device: str, dtype: str, threads: int | None, seconds: float) -> float:
    import torch

    if threads and device == "cpu":
        torch.set_num_threads(threads)
    n = _SIZES.get(device, 2048)
    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    best = 0.0
    deadline = time.perf_counter() + seconds
    with torch.inference_mode():
        torch.matmul(a, b)  # warm up kernels and caches
        sync()
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.matmul(a, b)
            sync()
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def _key(device: str, dtype: str, threads: int | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{platform.node()}|{cpu}|{device}|{dtype}|threads={threads}|torch={torch.__version__}"


def peak_flops(
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    cache_file: Path | None = None,
    seconds: float = 1.0,
) -> float:
    """Peak FLOP/s measured on this machine (cached in `cache_file` when given)."""
    cache: dict[str, float] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except ValueError:
            cache = {}
    key = _key(device, dtype, threads)
    if key not in cache:
        cache[key] = _probe(device, dtype, threads, seconds)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, cache_file)
    return cache[key]
