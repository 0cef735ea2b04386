"""MiniLM at batch 1, 8 and 32, seq 128, on cpu/torch, cpu/onnxruntime and cpu/openvino: one table.

Runs the real benchmark stage (a fresh process per point) and records into $ACCEL_HOME/results.duckdb.

    .venv/bin/python benchmarks/minilm_matrix.py [--min-seconds 2] [--threads 2]
"""

from __future__ import annotations

import argparse

from _common import MINILM, machine_load

from accel.tasks.benchmark import BenchConfig, benchmark
from accel.tasks.generate import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    config = BenchConfig(batches=[1, 8, 32], seqs=[128], min_seconds=args.min_seconds, threads=args.threads)
    print(machine_load())
    print("| target | batch | p50 ms | p90 ms | cv | tokens/s | MFU | peak RSS MiB | noisy | run |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for target in ("cpu/torch", "cpu/onnxruntime", "cpu/openvino"):
        report = benchmark(generate(MINILM, target).path, config)
        for m in report.measurements:
            if m.status != "ok":
                print(f"| {target} | {m.batch} | {m.status}: {m.error} |")
                continue
            print(
                f"| {target} | {m.batch} | {m.p50_ms:.1f} | {m.p90_ms:.1f} | {m.cv:.1%} | {m.tokens_per_s:.0f} | "
                f"{m.mfu:.1%} | {m.peak_rss_bytes >> 20} | {'yes' if m.noisy else 'no'} | {report.run_id[:8]} |"
            )
    print(machine_load())


if __name__ == "__main__":
    main()
