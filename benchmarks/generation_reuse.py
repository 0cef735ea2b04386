"""Generating MiniLM for cpu/onnxruntime + cpu/openvino: each exporting its own ONNX graph (the cache
emptied before every generation, as before the shared export) against the shared export (the cache
empty at the start: onnxruntime exports, OpenVINO reuses) and a warm cache (both reuse, as a forced
regeneration does). Side by side in one process, modes alternated over rounds, the load average
beside each figure. Works in a temporary ACCEL_HOME: your cache and skills are left alone.

    .venv/bin/python benchmarks/generation_reuse.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import MINILM, machine_load

TARGETS = ("cpu/onnxruntime", "cpu/openvino")
MODES = ("own export each", "shared, cold cache", "shared, warm cache")


def generate_pair(mode: str, work: Path) -> list[tuple[str, float, bool, float]]:
    """(target, seconds, reused the shared export, 1-min load average after) per target."""
    from accel.settings import get_settings
    from accel.tasks.generate import generate

    cache = get_settings().cache_dir / "onnx"
    if mode != "shared, warm cache":
        shutil.rmtree(cache, ignore_errors=True)
    out_dir = work / "skills" / mode.replace(" ", "-").replace(",", "")
    rows = []
    for target in TARGETS:
        if mode == "own export each":
            shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        skill = generate(MINILM, target, out_dir=out_dir, force=True)
        seconds = time.perf_counter() - started
        rows.append((target, seconds, skill.manifest["artifact"]["shared_export"]["reused"], os.getloadavg()[0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accel-generation-reuse-"))
    os.environ["ACCEL_HOME"] = str(work / "home")
    try:
        print(machine_load())
        generate_pair("shared, cold cache", work)  # warm-up: imports, page cache, the model's first load
        totals: dict[str, list[float]] = {mode: [] for mode in MODES}
        print("| round | mode | cpu/onnxruntime s | cpu/openvino s | total s | exported | load (1 min) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for number in range(args.rounds):
            order = MODES if number % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                rows = generate_pair(mode, work)
                total = sum(r[1] for r in rows)
                totals[mode].append(total)
                exported = sum(not r[2] for r in rows)
                loads = " / ".join(f"{r[3]:.2f}" for r in rows)
                print(
                    f"| {number + 1} | {mode} | {rows[0][1]:.2f} | {rows[1][1]:.2f} | {total:.2f} | "
                    f"{exported} of 2 | {loads} |"
                )
        base = statistics.median(totals[MODES[0]])
        for mode in MODES:
            median = statistics.median(totals[mode])
            print(f"{mode}: median total {median:.2f} s ({median - base:+.2f} s against {MODES[0]})")
        print(machine_load())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
