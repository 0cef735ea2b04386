"""The machine's measured memory bandwidth: a STREAM-like probe, cached per machine and threads.

Decoding one token reads every weight and the whole KV cache once, and does little arithmetic on each
byte: its bound is memory bandwidth, not FLOP/s, so a decode step is judged by the share of this figure
it reaches (bandwidth utilisation), as the prefill is by MFU against the GEMM peak (peak_flops.py).
It is measured, not read from a spec sheet: numpy copy (b = a) and triad (a = b + s * c) over arrays
far larger than the last-level cache, split across the point's threads (numpy releases the GIL in
both), best of N passes, in a process of its own (`python -m accel.hardware.memory_bandwidth`).
Bytes counted are those each kernel moves as numpy runs it: copy 16 per element (STREAM's count),
triad 40 (numpy makes it two passes: a = s * c, then a += b). Like the GEMM peak, only a quiet probe
(others under `max_foreign_share` of the cores) is cached; a contended one serves that run only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from accel.hardware.contention import contention_between, cpu_snapshot
from accel.hardware.peak_flops import DEFAULT_MAX_FOREIGN_SHARE, best_of, cache_key, keep_best_quiet, read_cache

MIN_ARRAY_BYTES = 64 << 20
MAX_ARRAY_BYTES = 1 << 30
LLC_MULTIPLE = 4  # each array this many times the last-level cache, so no pass is served from it
_BYTES_PER_ELEMENT = {"copy": 16, "triad": 40}  # float64: read a + write b; (read c + write a) + (read a, b + write a)
_CACHE_LEVELS = Path("/sys/devices/system/cpu/cpu0/cache")


class BandwidthProbe(BaseModel):
    threads: int | None
    bytes_per_s: float  # the best pass: what the memory system moves
    median_bytes_per_s: float
    spread: float  # 1 - median / best
    passes: int
    kernel: str  # which kernel reached the best pass (copy, triad)
    kernels: dict[str, float]  # the best pass of each kernel, bytes/s
    array_bytes: int
    llc_bytes: int | None
    foreign_share: float | None
    steal_share: float | None
    quiet: bool = False
    probed_at: str = ""
    cached: bool = False
    basis: str = ""

    @property
    def gbs(self) -> float:
        return self.bytes_per_s / 1e9


def last_level_cache_bytes(levels: Path = _CACHE_LEVELS) -> int | None:
    """The largest data or unified cache of CPU 0, as sysfs reports it (None where it does not)."""
    sizes = []
    for index in sorted(levels.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        if kind == "Instruction" or not size:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
        digits = size.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=None)


def default_array_bytes(llc_bytes: int | None) -> int:
    return min(MAX_ARRAY_BYTES, max(MIN_ARRAY_BYTES, LLC_MULTIPLE * (llc_bytes or 0)))


def _kernels(array_bytes: int, threads: int, pool: ThreadPoolExecutor) -> dict[str, Callable[[], None]]:
    import numpy as np

    n = array_bytes // 8
    a, b, c = (np.full(n, value) for value in (1.0, 2.0, 0.5))  # written: every page is touched before timing
    parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def copy(part: slice) -> None:
        np.copyto(b[part], a[part])

    def triad(part: slice) -> None:
        np.multiply(c[part], 3.0, out=a[part])
        np.add(a[part], b[part], out=a[part])

    def across(kernel: Callable[[slice], None]) -> Callable[[], None]:
        return lambda: list(pool.map(kernel, parts))

    return {"copy": across(copy), "triad": across(triad)}


def _probe(threads: int | None, array_bytes: int | None, repeats: int) -> dict:
    llc = last_level_cache_bytes()
    array_bytes = array_bytes or default_array_bytes(llc)
    workers = threads or len(os.sched_getaffinity(0))  # default: every core this process may use
    rates: dict[str, list[float]] = {}
    with ThreadPoolExecutor(workers) as pool:
        kernels = _kernels(array_bytes, workers, pool)
        for kernel in kernels.values():
            kernel()  # warm up the pool's threads and the pages
        before = cpu_snapshot()
        for name, kernel in kernels.items():
            moved = _BYTES_PER_ELEMENT[name] * (array_bytes // 8)
            rates[name] = []
            for _ in range(repeats):
                start = time.perf_counter()
                kernel()
                rates[name].append(moved / (time.perf_counter() - start))
        contention = contention_between(before, cpu_snapshot())
    best = best_of(rates)
    return {
        "threads": threads,
        "bytes_per_s": best["best"],
        "median_bytes_per_s": best["median"],
        "spread": best["spread"],
        "passes": best["count"],
        "kernel": best["kernel"],
        "kernels": best["kernels"],
        "array_bytes": array_bytes,
        "llc_bytes": llc,
        "foreign_share": contention.foreign_share if contention else None,
        "steal_share": contention.steal_share if contention else None,
        "probed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "basis": (
            f"numpy float64 copy (16 B/element) and triad (40 B/element, two passes) over three arrays of "
            f"{array_bytes >> 20} MiB (last-level cache {llc >> 20 if llc else '?'} MiB), {workers} thread(s), "
            f"best of {repeats} passes each"
        ),
    }


def probe_in_process(
    threads: int | None, array_bytes: int | None = None, repeats: int = 10, timeout_s: float = 300.0
) -> dict:
    """Run the probe in a fresh process (its arrays never sit in the caller's memory); its report."""
    argv = [sys.executable, "-m", "accel.hardware.memory_bandwidth", str(threads or 0), str(array_bytes or 0)]
    out = subprocess.run([*argv, str(repeats)], capture_output=True, text=True, timeout=timeout_s, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        tail = " / ".join(out.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the memory bandwidth probe exited with code {out.returncode}: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_bandwidth(
    threads: int | None = None,
    cache_file: Path | None = None,
    max_foreign_share: float = DEFAULT_MAX_FOREIGN_SHARE,
    array_bytes: int | None = None,
    repeats: int = 10,
) -> BandwidthProbe:
    """Memory bandwidth on this machine: the cached quiet probe, else a fresh one (cached only if quiet).

    Call it while holding the device (tasks/device_lock.device_slot), as the GEMM peak is: a benchmark
    beside it takes the same memory bus. `array_bytes` (tests: small and fast) bypasses the cache both
    ways: arrays smaller than the default may be served from the cache, so theirs is no machine figure.
    """
    key = cache_key("cpu", "memory", threads)
    cached = read_cache(cache_file).get(key) if array_bytes is None else None
    if cached is not None:
        return BandwidthProbe.model_validate({**cached, "cached": True})
    found = probe_in_process(threads, array_bytes, repeats)
    found["quiet"] = (found["foreign_share"] or 0.0) + (found["steal_share"] or 0.0) <= max_foreign_share
    if found["quiet"] and cache_file is not None and array_bytes is None:
        keep_best_quiet(cache_file, key, found, "bytes_per_s")
    return BandwidthProbe.model_validate(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.hardware.memory_bandwidth")
    parser.add_argument("threads", type=int)
    parser.add_argument("array_bytes", type=int, help="0: a multiple of the last-level cache")
    parser.add_argument("repeats", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(_probe(args.threads or None, args.array_bytes or None, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
