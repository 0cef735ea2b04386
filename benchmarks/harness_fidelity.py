"""Does the benchmark stage report what a plain timer sees? MiniLM, cpu/torch, batch 8, seq 128.

A: the benchmark stage's p50 (a fresh process per point, warmup, min iterations and duration).
B: torch.utils.benchmark.Timer.blocked_autorange on the same skill call and inputs, in a fresh process.
Alternated A B A B ... in one run; prints each pair, the median of the per-round ratios (each pair ran
seconds apart, so slow drifts of a shared machine cancel) and the ratio of the medians. Goal: within 3%.

    .venv/bin/python benchmarks/harness_fidelity.py [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import MINILM, machine_load

from accel.tasks.benchmark import BenchConfig, benchmark
from accel.tasks.generate import generate

TIMER = """
import importlib.util, json, sys
from torch.utils.benchmark import Timer
spec = importlib.util.spec_from_file_location("skill", sys.argv[1] + "/skill.py")
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
skill = module.Skill(threads=int(sys.argv[2])).load()
inputs = skill.make_inputs(8, 128, seed=0)
for _ in range(3):
    skill(inputs)
timer = Timer("skill(inputs)", globals={"skill": skill, "inputs": inputs}, num_threads=int(sys.argv[2]))
print(json.dumps(timer.blocked_autorange(min_run_time=2.0).median * 1000))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    skill = generate(MINILM, "cpu/torch")
    config = BenchConfig(batches=[8], seqs=[128], threads=args.threads, warmup=3, min_iters=10, min_seconds=2.0)
    print(f"MiniLM cpu/torch batch 8 seq 128, {args.threads} threads; {machine_load()}")
    harness, timer = [], []
    for round_ in range(args.rounds):
        m = benchmark(skill.path, config, record=False).measurements[0]
        out = subprocess.run(
            [sys.executable, "-c", TIMER, str(skill.path), str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        harness.append(m.p50_ms)
        timer.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            f"round {round_ + 1}: accel p50 {harness[-1]:.2f} ms (cv {m.cv:.1%}, {m.iterations} calls)  "
            f"Timer median {timer[-1]:.2f} ms  ratio {harness[-1] / timer[-1]:.3f}"
        )
    paired = statistics.median(a / b for a, b in zip(harness, timer, strict=True))
    ratio = statistics.median(harness) / statistics.median(timer)
    print(
        f"median over rounds: accel {statistics.median(harness):.2f} ms, Timer {statistics.median(timer):.2f} ms, "
        f"ratio of medians {ratio:.3f}, median of paired ratios {paired:.3f} "
        f"({'within' if abs(paired - 1) <= 0.03 else 'outside'} the 3% goal); {machine_load()}"
    )


if __name__ == "__main__":
    main()
