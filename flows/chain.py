"""`chain`: generate -> test -> benchmark for one model on one target, on that target's machine.

A failed test stops the benchmark, which is then recorded as skipped with the reason; a model that
cannot be generated ends the chain with that reason. Neither is retried: both fail the same way
again. The chain records itself as a run, and each stage its rows as it finishes.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from accel.flows.results import ChainResult
from accel.flows.runs import recorded_run, store
from accel.hardware import Target
from accel.tasks.benchmark import BenchConfig, benchmark_skill, skipped_rows
from accel.tasks.benchmark.process import point_preload
from accel.tasks.errors import (
    GenerationError,
    ModelRefError,
    SkillDirError,
    UnsupportedModelError,
    UnsupportedTargetError,
)
from accel.tasks.generate_stage import generate_skill
from accel.tasks.isolated import prewarm
from accel.tasks.progress import emit_progress
from accel.tasks.reference import REFERENCE_PRELOAD
from accel.tasks.validate import validate_skill

# Requests that cannot be served: the chain ends, with the reason, instead of erroring.
REFUSED = (GenerationError, ModelRefError, UnsupportedModelError, UnsupportedTargetError)


@flow(name="chain", persist_result=True, log_prints=True, flow_run_name="{model} on {target}")
def chain(
    model: str,
    target: str,
    level: str = "comprehensive",
    bench: dict[str, Any] | None = None,
    force: bool = False,
    parent_run_id: str | None = None,
    trigger: str | None = None,
) -> ChainResult:
    parsed = Target.parse(target)
    target = str(parsed)
    # The fork servers of the test stage and of the benchmark's points import while this one generates.
    prewarm(REFERENCE_PRELOAD)
    prewarm(point_preload(parsed.runtime))
    config = BenchConfig.model_validate(bench or {})
    params = {"model": model, "target": target, "level": level, "bench": config.model_dump(), "force": force}
    with recorded_run("chain", params, parent_run_id, trigger) as run:
        result = ChainResult(
            model=model, target=target, run_id=run.run_id, status="failed", stage="generate", message=""
        )
        emit_progress("generate", "start", 0.0, model=model, target=target)
        try:
            skill = generate_skill(model, target, force=force)
        except REFUSED as err:
            result.message = f"generation failed: {err}"
            run.fail(result.message)
            return result
        result.skill_id, result.skill_path = skill.skill_id, str(skill.path)

        result.stage = "test"
        emit_progress("test", "start", 0.0, model=model, target=target)
        report = validate_skill(str(skill.path), level)
        result.checks_total = len(report.checks)
        result.checks_passed = sum(c.status == "passed" for c in report.checks)
        if not report.passed:
            failed = [f"{c.check} ({c.status})" for c in report.checks if c.status in ("failed", "error")]
            result.message = f"tests failed: {', '.join(failed)}; benchmark skipped"
            store().record_measurements(skipped_rows(skill.path, config, run.run_id, result.message))
            run.fail(result.message)
            return result

        result.stage = "benchmark"
        emit_progress("benchmark", "start", 0.0, model=model, target=target)
        try:
            measured = benchmark_skill(str(skill.path), config).measurements
        except SkillDirError as err:  # a benchmark this skill cannot take (a --seq past its maximum, ...)
            result.message = f"benchmark refused: {err}"
            run.fail(result.message)
            return result
        result.add_measurements(measured)
        ok = [m for m in measured if m.status == "ok"]
        if len(ok) < len(measured):
            result.message = f"{len(measured) - len(ok)} of {len(measured)} benchmark points failed"
            run.fail(result.message)
            return result
        result.status, result.stage = "passed", "done"
        result.message = f"{result.checks_passed}/{result.checks_total} checks passed, {len(ok)} points measured"
        emit_progress("benchmark", "done", 1.0, model=model, target=target)
        return result
