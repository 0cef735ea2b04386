"""`nightly`: the matrix in nightly.yaml through the pipeline, judged against the previous night.

Every regression (slower round medians past the threshold, separated from the previous night's and
beyond either night's spread between rounds: storage/stats.compare_rounds) becomes a Prefect event
`accel.regression.detected`, so a Prefect automation can notify someone, and the whole comparison a
markdown artifact. A noisy side is inconclusive, never a regression; each row shows its flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from accel.flows.pipeline import pipeline
from accel.flows.results import PipelineResult
from accel.flows.runs import recorded_run, store
from accel.settings import project_root
from accel.storage import DEFAULT_THRESHOLD, PointComparison, compare_runs, run_measurements
from accel.tasks.benchmark import BenchConfig

REGRESSION_EVENT = "accel.regression.detected"


class Regression(BaseModel):
    threshold: float = DEFAULT_THRESHOLD  # (an `alpha` key from before rounds is ignored)


class NightlyMatrix(BaseModel):
    models: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    level: str = "comprehensive"
    benchmark: BenchConfig = Field(default_factory=BenchConfig)
    regression: Regression = Field(default_factory=Regression)

    @classmethod
    def load(cls, path: str | Path) -> NightlyMatrix:
        path = Path(path).expanduser()
        if not path.is_absolute():
            path = (project_root() or Path.cwd()) / path
        return cls.model_validate(yaml.safe_load(path.read_text()))


class NightlyResult(BaseModel):
    run_id: str
    previous_run_id: str | None
    pipeline: PipelineResult
    comparisons: list[PointComparison]
    regressions: int


def previous_nightly(current: str) -> str | None:
    """The latest earlier nightly run that measured something."""
    results = store()  # the file, or the API under `accel up`: both answer these reads
    this = results.get_run(current)
    before = this.started_at if this is not None else None
    earlier = [
        r.run_id
        for r in results.list_runs(kind="nightly", limit=1000)  # newest first
        if r.run_id != current and (before is None or (r.started_at is not None and r.started_at < before))
    ]
    return next((run_id for run_id in earlier if run_measurements(results, run_id)), None)


def _markdown(run_id: str, previous: str | None, comparisons: list[PointComparison]) -> str:
    if previous is None:
        return f"# accel nightly {run_id}\n\nNo earlier nightly run to compare with: this one is the baseline.\n"
    regressed = [c for c in comparisons if c.change.verdict == "regressed"]
    lines = [
        f"# accel nightly {run_id}",
        "",
        f"Compared with {previous}: {len(regressed)} regression(s).",
        "",
        "| model | target | scenario | batch | seq | p50 ms | verdict | flag | why |",
        "|" + " --- |" * 9,
    ]
    for c in sorted(comparisons, key=lambda c: c.change.verdict != "regressed"):
        p50 = " -> ".join("-" if v is None else f"{v:.2f}" for v in (c.old_p50_ms, c.new_p50_ms))
        verdict = f"**{c.change.verdict}**" if c.change.verdict == "regressed" else c.change.verdict
        lines.append(
            f"| {c.model_ref} | {c.target} | {c.scenario} | {c.batch} | {c.seq} | {p50} | {verdict} | "
            f"{('NOISY: ' + (c.noise_reason or 'flagged')) if c.noisy else '-'} | {c.change.reason} |"
        )
    return "\n".join(lines) + "\n"


def _emit_regression(run_id: str, previous: str, c: PointComparison) -> None:
    payload: dict[str, Any] = {
        "run_id": run_id,
        "previous_run_id": previous,
        "model": c.model_ref,
        "target": c.target,
        "scenario": c.scenario,
        "batch": c.batch,
        "seq": c.seq,
        "old_p50_ms": c.old_p50_ms,
        "new_p50_ms": c.new_p50_ms,
        "ratio": c.change.ratio,
        "old_round_p50_ms": c.old_round_p50_ms,
        "new_round_p50_ms": c.new_round_p50_ms,
        "noisy": c.noisy,
    }
    emit_event(
        event=REGRESSION_EVENT,
        resource={
            "prefect.resource.id": f"accel.benchmark.{c.model_ref}.{c.target}.{c.scenario}.b{c.batch}.s{c.seq}",
            "prefect.resource.name": f"{c.model_ref} on {c.target}",
        },
        related=[{"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}],
        payload=payload,
    )


@flow(name="nightly", persist_result=True, log_prints=True)
def nightly(matrix: str = "nightly.yaml", trigger: str = "schedule") -> NightlyResult:
    spec = NightlyMatrix.load(matrix)
    with recorded_run("nightly", {"matrix": matrix, **spec.model_dump()}, trigger=trigger) as run:
        result = pipeline(
            spec.models,
            spec.targets,
            spec.level,
            spec.benchmark.model_dump(),
            parent_run_id=run.run_id,
            trigger=trigger,
        )
        previous = previous_nightly(run.run_id)
        comparisons = []
        if previous is not None:
            comparisons = compare_runs(store(), previous, run.run_id, threshold=spec.regression.threshold)
        regressions = [c for c in comparisons if c.change.verdict == "regressed"]
        create_markdown_artifact(
            markdown=_markdown(run.run_id, previous, comparisons),
            key="accel-nightly-regressions",
            description="accel nightly regressions",
        )
        for c in regressions:
            _emit_regression(run.run_id, previous, c)
        if result.status != "passed" or regressions:
            run.fail(f"{len(regressions)} regression(s); pipeline {result.status}")
        return NightlyResult(
            run_id=run.run_id,
            previous_run_id=previous,
            pipeline=result,
            comparisons=comparisons,
            regressions=len(regressions),
        )
