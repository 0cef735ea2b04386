"""What do isolated processes cost, started cold (a fresh interpreter) and warm (forked, tasks/isolated)?

For each, alternated cold / warm in one run (ACCEL_WARM_PROCESSES=0 / 1), on a tiny bert skill (cpu/onnxruntime)
and on MiniLM (cpu/torch):
- start to first event: `isolated.start` of the check runner until its `ready` report (the reference
  rendered), and of a trivial entry (the launcher alone);
- validation at the basic level: wall, and the share of it before the first check starts;
- one benchmark point (batch 1, seq 128, 20 iterations): wall of the point's process, and its p50;
- the p50 of a warm point against torch.utils.benchmark.Timer in a fresh process on the same call
  (harness fidelity, goal within 3%: benchmarks/harness_fidelity.py does the longer version).

    .venv/bin/python benchmarks/warm_processes.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import MINILM, machine_load

from accel.tasks import isolated
from accel.tasks.benchmark.process import point_preload, spawn_point
from accel.tasks.generate import generate
from accel.tasks.reference import REFERENCE_PRELOAD
from accel.tasks.validate import validate

ROOT = Path(__file__).resolve().parents[1]
POINT = {
    "scenario": "forward",
    "batch": 1,
    "seq": 128,
    "threads": len(os.sched_getaffinity(0)),
    "warmup": 3,
    "min_iters": 20,
    "min_seconds": 0.5,
    "max_seconds": 30.0,
}


def first_event(entry: str, argv: list[str], preload: tuple[str, ...], wait_for: str | None) -> float:
    started = time.perf_counter()
    with isolated.start(entry, argv, preload) as process:
        for event in process.events(600):
            if wait_for is None or event.get("event") == wait_for:
                took = time.perf_counter() - started
                process.kill()
                return took
    raise RuntimeError(f"{entry} ended before {wait_for or 'its first event'}: {process.tail()}")


def validation(skill: Path) -> tuple[float, float]:
    started = time.perf_counter()
    report = validate(skill, "basic", record=False)
    wall = time.perf_counter() - started
    assert report.passed, report.message
    checks = sum(c.duration_s or 0.0 for c in report.checks)
    return wall, wall - checks


def point(skill: Path, runtime: str) -> tuple[float, float]:
    started = time.perf_counter()
    result = spawn_point(skill, POINT, 600, runtime)
    assert result["status"] == "ok", result
    return time.perf_counter() - started, statistics.median(result["samples"]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("ACCEL_HOME", tempfile.mkdtemp(prefix="accel-bench-warm-"))
    from tests.tiny_models import build_tiny_models

    tiny = build_tiny_models(Path(os.environ["ACCEL_HOME"]) / "tiny", ["bert"])["bert"]
    out = Path(os.environ["ACCEL_HOME"]) / "skills"
    skills = {
        "tiny bert cpu/onnxruntime": (generate(str(tiny), "cpu/onnxruntime", out_dir=out).path, "onnxruntime"),
        "MiniLM cpu/torch": (generate(MINILM, "cpu/torch", out_dir=out).path, "torch"),
    }
    figures: dict[str, dict[str, list[float]]] = {}

    def add(name: str, mode: str, value: float) -> None:
        figures.setdefault(name, {}).setdefault(mode, []).append(value)

    for mode in ("cold", "warm") * args.rounds:
        os.environ["ACCEL_WARM_PROCESSES"] = "1" if mode == "warm" else "0"
        if mode == "warm":  # each server's own start (once per parent process) is counted apart, below
            for preload in (REFERENCE_PRELOAD, ("json",), *(point_preload(r) for _, r in skills.values())):
                isolated.fork_server(preload).await_ready()
        probe = ["tests.tasks.isolated_probe:main", ["ok"], ("json",), None]
        add("launcher alone: start to first event (ms)", mode, first_event(*probe) * 1000)
        for label, (skill, runtime) in skills.items():
            argv = [str(skill), "--checks", "loads"]
            ready = first_event("accel.tasks.check_runner:main", argv, REFERENCE_PRELOAD, "ready")
            add(f"{label}: check process start to `ready` (s)", mode, ready)
            wall, before_checks = validation(skill)
            add(f"{label}: validation basic, wall (s)", mode, wall)
            add(f"{label}: validation basic, outside the checks (s)", mode, before_checks)
            wall, p50 = point(skill, runtime)
            add(f"{label}: one benchmark point, process wall (s)", mode, wall)
            add(f"{label}: one benchmark point, p50 (ms)", mode, p50)
        print(f"  round done ({mode}), {machine_load()}", flush=True)

    isolated.stop_servers()
    os.environ["ACCEL_WARM_PROCESSES"] = "1"
    print()
    for preload in (REFERENCE_PRELOAD, point_preload("torch"), point_preload("onnxruntime")):
        started = time.perf_counter()
        isolated.fork_server(preload).await_ready()
        took = time.perf_counter() - started
        print(f"fork server start, once per process (imports {', '.join(preload)}): {took:.2f} s")
    print(f"{'figure':<70} {'cold (median)':>14} {'warm (median)':>14}")
    for name, by_mode in figures.items():
        cold, warm = statistics.median(by_mode["cold"]), statistics.median(by_mode["warm"])
        print(f"{name:<70} {cold:>14.3f} {warm:>14.3f}")
    print(machine_load())


if __name__ == "__main__":
    main()
