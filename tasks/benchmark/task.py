"""The benchmark stage as a Prefect task, and the rows of a benchmark that was skipped."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from accel.storage import MeasurementRecord
from accel.tasks.benchmark.config import BenchConfig, BenchReport, plan_points, point_seq
from accel.tasks.benchmark.stage import benchmark
from accel.tasks.manifest import read_manifest
from accel.tasks.progress import stage_progress
from accel.tasks.validate import current_flow_run_id


def skipped_rows(skill_dir: str | Path, config: BenchConfig, run_id: str, reason: str) -> list[MeasurementRecord]:
    """One `skipped` row, with the reason, for every point `config` would have measured on this skill."""
    manifest = read_manifest(Path(skill_dir))
    return [
        MeasurementRecord(
            run_id=run_id,
            skill_id=manifest["skill_id"],
            scenario=point["scenario"],
            batch=point["batch"],
            seq=point_seq(manifest, point),
            threads=point["threads"],
            status="skipped",
            error=reason,
        )
        for point in plan_points(config, manifest)
    ]


@task(name="benchmark_skill", task_run_name="benchmark {skill_dir}")
def benchmark_skill(skill_dir: str, config: BenchConfig | None = None) -> BenchReport:
    """Prefect task: benchmark a skill; each point's row lands in the results store as it finishes.

    No retries: a point that crashes or times out is a result, recorded as such.
    """
    run_id = current_flow_run_id()
    return benchmark(
        skill_dir,
        config,
        run_id=str(run_id) if run_id else None,
        trigger="prefect",
        progress=stage_progress("benchmark", skill_dir=skill_dir),
    )
