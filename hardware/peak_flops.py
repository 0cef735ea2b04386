"""The device's measured peak FLOP/s: a GEMM probe, cached per machine, device, precision and threads.

Model FLOPs utilisation (MFU) divides what a model achieves by this figure, so a wrong one makes every
MFU on the install wrong. It is measured, not taken from a spec sheet: the best of many large square
matrix products of every runtime's GEMM (torch; on CPU fp32 also ONNX Runtime's and OpenVINO's,
which beat torch's on some CPUs), in a process of its own (`python -m accel.hardware.peak_flops`, or a
fork of a warm server that has imported them),
with the spread of the products and the CPU share other processes used meanwhile stored beside it. Only a quiet probe
(others under `max_foreign_share` of the cores) is cached; a contended one is used for that run only,
marked so, and the next run probes again. The theoretical peak (hardware/cpu.py) is recorded beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from accel.hardware.contention import contention_between, cpu_snapshot, foreign_device_pids
from accel.hardware.cpu import theoretical_peak_flops
from accel.hardware.runtimes import RUNTIME_SPECS

_SIZES = {"cpu": 1024, "cuda": 8192, "mps": 4096, "xpu": 4096}
DEFAULT_MAX_FOREIGN_SHARE = 0.10


class PeakProbe(BaseModel):
    device: str
    dtype: str
    threads: int | None
    flops: float  # the best product: what the device reaches
    median_flops: float
    spread: float  # 1 - median / best: how far a typical product fell below the best one
    products: int
    foreign_share: float | None  # other processes' CPU time during the probe, share of the cores
    steal_share: float | None
    foreign_device_pids: list[int] | None = None
    quiet: bool = False
    probed_at: str = ""
    theoretical_flops: float | None = None
    theoretical_basis: str | None = None
    cached: bool = False  # read from the cache (a quiet probe of an earlier run)
    kernel: str | None = None  # whose GEMM reached the best product (torch, onnxruntime, openvino)
    kernels: dict[str, float] = {}  # the best product of each runtime's GEMM


def _torch_gemm(device: str, dtype: str, threads: int | None) -> Callable[[], None]:
    import torch

    if threads and device == "cpu":
        torch.set_num_threads(threads)
    n = _SIZES.get(device, 2048)
    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))

    def product() -> None:
        with torch.inference_mode():
            torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    return product


def _gemms(device: str, dtype: str, threads: int | None) -> dict[str, Callable[[], None]]:
    """Every GEMM this machine's runtimes offer for the device and precision, by runtime.

    torch's CPU GEMM (MKL / oneDNN) is not the fastest everywhere (on AMD CPUs ONNX Runtime's and
    OpenVINO's own kernels reach well past it), and a skill on those runtimes then shows an MFU above
    100%: the peak is the best of them all.
    """
    gemms = {"torch": _torch_gemm(device, dtype, threads)}
    if device == "cpu" and dtype == "float32":
        for spec in RUNTIME_SPECS:
            if spec.cpu_gemm is None:
                continue
            try:
                gemms[spec.name] = spec.cpu_gemm(_SIZES["cpu"], threads)
            except Exception:  # runtime not installed or broken here: the others still count
                continue
    return gemms


def best_of(rates: dict[str, list[float]]) -> dict:
    """What a probe reports of its timed rates by kernel: the fastest kernel's best and median rate, the
    spread between them, how many were timed, and each kernel's best (rounded)."""
    bests = {name: max(found) for name, found in rates.items()}
    kernel = max(bests, key=bests.__getitem__)
    found = sorted(rates[kernel])
    best, median = found[-1], found[len(found) // 2]
    return {
        "best": best,
        "median": median,
        "spread": round(1 - median / best, 4),
        "count": sum(len(r) for r in rates.values()),
        "kernel": kernel,
        "kernels": {name: round(value) for name, value in bests.items()},
    }


def probe_here(device: str, dtype: str, threads: int | None, seconds: float) -> dict:
    """The GEMM probe in this process (meant for a process of its own: `probe_in_process`, or a warm fork)."""
    n = _SIZES.get(device, 2048)
    gemms = _gemms(device, dtype, threads)
    for product in gemms.values():
        product()  # warm up kernels and caches
    rates: dict[str, list[float]] = {name: [] for name in gemms}
    before = cpu_snapshot()
    share = seconds / len(gemms)
    for name, product in gemms.items():
        deadline = time.perf_counter() + share
        while time.perf_counter() < deadline or len(rates[name]) < 3:
            start = time.perf_counter()
            product()
            rates[name].append(2 * n**3 / (time.perf_counter() - start))
    contention = contention_between(before, cpu_snapshot())
    best = best_of(rates)
    return {
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "flops": best["best"],
        "median_flops": best["median"],
        "spread": best["spread"],
        "products": best["count"],
        "kernel": best["kernel"],
        "kernels": best["kernels"],
        "foreign_share": contention.foreign_share if contention else None,
        "steal_share": contention.steal_share if contention else None,
        "foreign_device_pids": foreign_device_pids(0) if device == "cuda" else None,
        "probed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def cache_key(device: str, dtype: str, threads: int | None) -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()}|{cpu}|{device}|{dtype}|threads={threads}"


def read_cache(cache_file: Path | None) -> dict[str, dict]:
    """The quiet probes cached so far, by key (entries of older probe versions are dropped)."""
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        cache = json.loads(cache_file.read_text())
    except ValueError:
        return {}
    # Entries from before the probe timed every runtime's GEMM (no "kernels") understate the peak.
    return {k: v for k, v in cache.items() if isinstance(v, dict) and v.get("quiet") and v.get("kernels")}


def keep_best_quiet(cache_file: Path, key: str, found: dict, figure: str) -> None:
    """Cache a quiet probe under `key` unless a better one (higher `figure`) is there already."""
    cache = read_cache(cache_file)  # read now: another process may have cached one meanwhile
    if key in cache and cache[key][figure] >= found[figure]:
        return
    cache[key] = found
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, cache_file)


def probe_in_process(
    device: str, dtype: str, threads: int | None, seconds: float = 1.0, timeout_s: float = 300.0
) -> dict:
    """Run the GEMM probe in a fresh process (torch stays out of the caller); its report."""
    out = subprocess.run(
        [sys.executable, "-m", "accel.hardware.peak_flops", device, dtype, str(threads or 0), str(seconds)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        tail = " / ".join(out.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the peak FLOP/s probe exited with code {out.returncode}: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_flops(
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    cache_file: Path | None = None,
    seconds: float = 1.0,
    max_foreign_share: float = DEFAULT_MAX_FOREIGN_SHARE,
    run_probe: Callable[..., dict] = probe_in_process,
) -> PeakProbe:
    """Peak FLOP/s on this machine: the cached quiet probe, else a fresh probe (cached only if quiet).

    Call it while holding the device (tasks/device_lock.device_slot): another benchmark running
    beside the probe is exactly the contention that makes it worthless. `run_probe(device=, dtype=,
    threads=, seconds=)` runs `probe_here` in a process of its own: a fresh interpreter by default, a
    warm fork from the benchmark stage (tasks/benchmark/stage), which saves importing every runtime.
    """
    theoretical = theoretical_peak_flops(dtype, threads) if device == "cpu" else None
    extra = {"theoretical_flops": theoretical[0], "theoretical_basis": theoretical[1]} if theoretical else {}
    key = cache_key(device, dtype, threads)
    cached = read_cache(cache_file).get(key)
    if cached is not None:
        return PeakProbe.model_validate({**cached, **extra, "cached": True})
    found = run_probe(device=device, dtype=dtype, threads=threads, seconds=seconds)
    foreign = (found["foreign_share"] or 0.0) + (found["steal_share"] or 0.0)
    found["quiet"] = foreign <= max_foreign_share and not found.get("foreign_device_pids")
    if found["quiet"] and cache_file is not None:
        keep_best_quiet(cache_file, key, found, "flops")
    return PeakProbe.model_validate({**found, **extra})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.hardware.peak_flops")
    parser.add_argument("device")
    parser.add_argument("dtype")
    parser.add_argument("threads", type=int)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    print(json.dumps(probe_here(args.device, args.dtype, args.threads or None, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
