"""Can `accel compare` be trusted on this machine? False alarms on A/A pairs, and a planted 10% slowdown found.

Runs the benchmark stage on one tiny skill as it ships (A) and on a twin whose call spins 10% of A's
median longer (B), alternating A0 B0 A1 B1 ... A20: each run R rounds, each round its own process,
as `accel bench` does. Then judges, with storage/compare.py's rule:

- 20 A/A comparisons (A_i -> A_i+1): goal 0 of 20 `regressed`;
- 20 detections (A_i -> B_i): goal at least 19 of 20 `regressed`;

and prints, for each, the verdict, the ratio, the others' CPU share and the load average meanwhile.
Affordable: a tiny BERT (built offline), short rounds, no FLOP counting, runs reused across pairs.

    .venv/bin/python benchmarks/verdict_calibration.py [--pairs 20] [--rounds 3] [--min-seconds 0.3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models builds the tiny model

from _common import machine_load

CALL = "        return self._backend.run(check_inputs(inputs))\n"


def spin_twin(skill_dir: Path, into: Path, seconds: float) -> Path:
    """A copy of the skill whose every call first spins `seconds` on the CPU (a planted slowdown)."""
    twin = shutil.copytree(skill_dir, into)
    source = (twin / "skill.py").read_text()
    spin = (
        f"        _end = time.perf_counter() + {seconds!r}\n"
        "        while time.perf_counter() < _end:\n"
        "            pass\n"
    )
    if CALL not in source:
        raise SystemExit("the skill template changed: cannot plant the slowdown")
    (twin / "skill.py").write_text(source.replace(CALL, spin + CALL))
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--slowdown", type=float, default=0.10)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="accel-calibration-"))
    os.environ.update(ACCEL_HOME=str(home / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    from accel.storage import ResultsStore, compare_rounds, compare_runs
    from accel.tasks.benchmark import BenchConfig, benchmark
    from accel.tasks.generate import generate
    from tests.tiny_models import build_tiny_models

    bert = build_tiny_models(home / "tiny")["bert"]
    skill = generate(str(bert), "cpu/onnxruntime", out_dir=home / "skills").path
    config = BenchConfig(
        batches=[8],
        seqs=[128],
        threads=1,
        warmup=5,
        min_iters=20,
        min_seconds=args.min_seconds,
        rounds=args.rounds,
        flops=False,
    )
    started = time.monotonic()
    benchmark(skill, config)  # warm-up, not judged: the first run after building pays cold caches (about 5% here)
    first = benchmark(skill, config)
    base_ms = statistics.median(first.measurements[0].round_p50_ms)
    twin = spin_twin(skill, home / "slow", args.slowdown * base_ms / 1000)
    print(f"tiny bert cpu/onnxruntime b8 s128, 1 thread, {args.rounds} rounds x >= {args.min_seconds} s per run")
    print(f"A median {base_ms:.4f} ms; B spins {args.slowdown:.0%} of it ({args.slowdown * base_ms:.4f} ms) more")
    a_runs, b_runs, loads = [first], [], [machine_load()]
    for _ in range(args.pairs):
        b_runs.append(benchmark(twin, config))
        a_runs.append(benchmark(skill, config))
        loads.append(machine_load())
    store = ResultsStore(home / "home" / "results.duckdb")

    def judged(title: str, pairs: list[tuple]) -> tuple[dict[str, int], dict[str, int]]:
        """Verdicts as `accel compare` gives them, and as the round rule alone would (noise flags ignored)."""
        counts: dict[str, int] = {}
        alone: dict[str, int] = {}
        print(f"\n{title}\n  #  verdict      rule alone   ratio  others' CPU old / new  load")
        for number, (old, new, load) in enumerate(pairs):
            [c] = compare_runs(store, old.run_id, new.run_id)
            m_old, m_new = old.measurements[0], new.measurements[0]
            rule = compare_rounds(m_old.round_p50_ms, m_new.round_p50_ms).verdict
            counts[c.change.verdict] = counts.get(c.change.verdict, 0) + 1
            alone[rule] = alone.get(rule, 0) + 1
            shares = f"{m_old.foreign_cpu_share:.0%} / {m_new.foreign_cpu_share:.0%}"
            ratio = f"{c.change.ratio:.3f}" if c.change.ratio else "-"
            flag = "  noisy" if c.noisy else ""
            print(f"  {number:2d} {c.change.verdict:12s} {rule:12s} {ratio}  {shares:>22s}  {load}{flag}")
        return counts, alone

    aa, aa_alone = judged(
        "A/A (same skill, consecutive runs)", [(a_runs[i], a_runs[i + 1], loads[i + 1]) for i in range(args.pairs)]
    )
    ab, ab_alone = judged(
        f"A/B (planted {args.slowdown:.0%} slowdown)", [(a_runs[i], b_runs[i], loads[i + 1]) for i in range(args.pairs)]
    )
    print(f"\nfalse 'regressed' on A/A: {aa.get('regressed', 0)} of {args.pairs} (goal 0); all verdicts {aa}")
    print(f"planted slowdown found 'regressed': {ab.get('regressed', 0)} of {args.pairs} (goal >= 19); all {ab}")
    print(f"the round rule alone (noise flags ignored): A/A {aa_alone}; planted slowdown {ab_alone}")
    print(f"{len(a_runs) + len(b_runs)} runs (and a warm-up run) in {time.monotonic() - started:.0f} s")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
