"""`python -m accel.tasks.bench_runner`: measure one benchmark point of one skill, in a fresh process.

The benchmark stage starts one such process per point (tasks/isolated: forked from a server that has
imported numpy and the skill's runtime, and nothing else), so memory peaks are the point's own and
nothing (allocator caches, compiled kernels, a crashed runtime) leaks from one point to the next. The result
goes to a file descriptor of its own (--report-fd) as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accel.hardware.contention import contention_between, cpu_snapshot, foreign_device_pids
from accel.tasks.isolated import peak_rss_of
from accel.tasks.skill_module import import_skill


def measure(
    call: Callable[[], Any], warmup: int, min_iters: int, min_seconds: float, max_seconds: float
) -> tuple[list[float], float, float, dict[str, Any] | None]:
    """Untimed warmup calls, then timed calls until both minimums are met (or the maximum time is spent).

    Python's cyclic garbage collector is off while timing (as in timeit and pyperf): a collection
    landing inside one call would be charged to the model. Returns (seconds per call, wall-clock
    start, wall-clock end of the timed part, what other processes used of these cores meanwhile).
    """
    for _ in range(warmup):
        call()
    samples: list[float] = []
    gc.collect()
    gc.disable()
    try:
        before = cpu_snapshot()
        started_wall, started = time.time(), time.perf_counter()
        while True:
            elapsed = time.perf_counter() - started
            if (len(samples) >= min_iters and elapsed >= min_seconds) or (samples and elapsed >= max_seconds):
                break
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
        ended_wall, after = time.time(), cpu_snapshot()
    finally:
        gc.enable()
    contention = contention_between(before, after)
    return samples, started_wall, ended_wall, contention.model_dump() if contention else None


def fixed_length_generate(skill: Any) -> tuple[Callable[[dict, int], Any], bool]:
    """`generate(inputs, n)` that decodes exactly n tokens (eos ignored before them, as the leaderboards
    run it) where the skill's generate takes `min_new_tokens`; else its own call, which may stop at eos
    (the row then says so, and its figures divide by the tokens it did decode)."""
    if "min_new_tokens" in inspect.signature(skill.generate).parameters:
        return (lambda inputs, n: skill.generate(inputs, n, min_new_tokens=n)), True
    return skill.generate, False


def _accelerator_peak(runtime: str, device: str) -> int | None:
    if runtime == "torch" and device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return None


def run_point(skill_dir: Path, point: dict[str, Any]) -> dict[str, Any]:
    module = import_skill(skill_dir / "skill.py", "_accel_skill_under_benchmark")
    started = time.perf_counter()
    skill = module.Skill(threads=point["threads"]).load()
    load_s = time.perf_counter() - started
    inputs = skill.make_inputs(point["batch"], point["seq"], seed=0)
    timing = {k: point[k] for k in ("warmup", "min_iters", "min_seconds", "max_seconds")}
    result: dict[str, Any] = {"load_s": load_s, "inputs": {k: list(v.shape) for k, v in inputs.items()}}
    if point["scenario"] == "forward":
        t0 = time.perf_counter()
        skill(inputs)
        result["first_call_s"] = time.perf_counter() - t0
        result["samples"], result["start"], result["end"], result["contention"] = measure(
            lambda: skill(inputs), **timing
        )
    else:  # generate: the whole greedy loop, and its first token alone (prefill: the time to first token)
        generate, result["fixed_length"] = fixed_length_generate(skill)
        new_tokens = point["new_tokens"]
        t0 = time.perf_counter()
        tokens = generate(inputs, new_tokens)
        result["first_call_s"] = time.perf_counter() - t0
        result["new_tokens"] = int(tokens.shape[1])
        result["prefill"], *_ = measure(lambda: generate(inputs, 1), **{**timing, "min_seconds": 0.0})
        result["samples"], result["start"], result["end"], result["contention"] = measure(
            lambda: generate(inputs, new_tokens), **timing
        )
    result["peak_accel_bytes"] = _accelerator_peak(module.TARGET.split("/")[1].split(":")[0], module.DEVICE)
    if module.TARGET.startswith("cuda/") and result.get("contention") is not None:
        # other processes on the GPU right after the window (the skill runs on device 0 of what it sees)
        result["contention"]["foreign_device_pids"] = foreign_device_pids(0)
    skill.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.bench_runner")
    parser.add_argument("skill_dir", type=Path)
    parser.add_argument("--point", required=True, help="the point as JSON")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    with os.fdopen(args.report_fd, "w") as report:
        try:
            result = {"status": "ok", **run_point(args.skill_dir, json.loads(args.point))}
        except MemoryError as err:
            result = {"status": "oom", "error": f"MemoryError: {err}"}
        except Exception as err:
            message = f"{type(err).__name__}: {err}"[:2000]
            result = {"status": "oom" if "out of memory" in message.lower() else "error", "error": message}
        result["peak_rss_bytes"] = peak_rss_of(os.getpid())  # also after a MemoryError: how far it got
        report.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
