"""One stage for one model ref and target, as a flow: what the component APIs start.

Each generates the skill first (reused when it exists), so every stage can start from a model ref.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from accel.flows.runs import recorded_run
from accel.hardware import Target
from accel.tasks.benchmark import BenchConfig, BenchReport, benchmark_skill
from accel.tasks.generate_stage import generate_skill
from accel.tasks.generated import GeneratedSkill
from accel.tasks.validate import TestReport, validate_skill


@flow(name="generate", persist_result=True, flow_run_name="generate {model} for {target}")
def generate_flow(model: str, target: str, force: bool = False, trigger: str | None = None) -> GeneratedSkill:
    target = str(Target.parse(target))
    with recorded_run("generate", {"model": model, "target": target, "force": force}, trigger=trigger):
        return generate_skill(model, target, force=force)


@flow(name="test", persist_result=True, flow_run_name="test {model} on {target}")
def test_flow(model: str, target: str, level: str = "basic", trigger: str | None = None) -> TestReport:
    target = str(Target.parse(target))
    with recorded_run("test", {"model": model, "target": target, "level": level}, trigger=trigger) as run:
        report = validate_skill(str(generate_skill(model, target).path), level)
        if not report.passed:
            run.fail(", ".join(c.check for c in report.checks if c.status in ("failed", "error")) + " failed")
        return report


@flow(name="benchmark", persist_result=True, flow_run_name="benchmark {model} on {target}")
def benchmark_flow(
    model: str, target: str, bench: dict[str, Any] | None = None, trigger: str | None = None
) -> BenchReport:
    target = str(Target.parse(target))
    config = BenchConfig.model_validate(bench or {})
    params = {"model": model, "target": target, "bench": config.model_dump()}
    with recorded_run("benchmark", params, trigger=trigger) as run:
        report = benchmark_skill(str(generate_skill(model, target).path), config)
        bad = [m for m in report.measurements if m.status != "ok"]
        if bad:
            run.fail(f"{len(bad)} of {len(report.measurements)} points failed")
        return report
