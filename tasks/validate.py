"""The test stage: run a skill's checks in a process of its own and turn what it reports into a verdict.

A skill that crashes or hangs ends its process, never the caller: the check it was in gets an
`error` verdict with the reason (exit code, signal, or timeout, and the tail of its output), and the
checks after it are reported as skipped. Every verdict is recorded in the results store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from prefect import task
from pydantic import BaseModel

from accel.storage import CheckRecord
from accel.tasks import isolated
from accel.tasks.checks import DEFAULT_CHECK_TIMEOUT_S, LEVELS, STARTUP_TIMEOUT_S, CheckResult, check_timeout
from accel.tasks.levels import check_level
from accel.tasks.manifest import load_manifest
from accel.tasks.progress import stage_progress
from accel.tasks.reference import REFERENCE_PRELOAD
from accel.tasks.stage_run import open_stage_run

Level = Literal["basic", "comprehensive", "fault_tolerance"]
Status = Literal["passed", "failed", "error"]
Progress = Callable[[str, float], None]


class TestReport(BaseModel):
    __test__ = False  # not a pytest test class

    run_id: str
    skill_id: str
    skill_path: Path
    target: str
    level: str
    status: Status
    message: str = ""  # why it did not pass; for `error`, what stopped the checks
    checks: list[CheckResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tail(lines: list[str]) -> str:
    return (" | last output: " + " / ".join(lines))[:1500] if lines else ""


class CheckRun(BaseModel):
    """What one check-runner process gave: a result per check, and why it ended early if it did."""

    results: list[CheckResult]
    ended_early: str | None = None  # set when no check started: start-up failed or the process died


def run_checks(
    skill_dir: Path,
    checks: tuple[str, ...],
    timeout_s: float,
    progress: Progress | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> CheckRun:
    """Run `checks` in a fresh check-runner process (tasks/isolated: forked warm, crash-contained); one
    result per check, whatever happens to it.

    `timeout_s` bounds each check from its start; the process's start-up (rendering the reference) has
    `startup_timeout_s` of its own.
    """
    results: dict[str, CheckResult] = {}
    current: str | None = None
    started_any = False
    fatal: str | None = None
    argv = [str(skill_dir), "--checks", ",".join(checks)]
    with isolated.start("accel.tasks.check_runner:main", argv, REFERENCE_PRELOAD) as process:
        for event in process.events(startup_timeout_s, timeout_s):
            if event["event"] == "start":
                current, started_any = event["check"], True
                if progress:
                    progress(current, len(results) / len(checks))
            elif event["event"] == "result":
                result = CheckResult.model_validate(event["result"])
                results[result.check] = result
                current = None
            elif event["event"] == "fatal":
                fatal = event["message"]
        if process.timed_out:
            process.kill()
            ended = f"timed out after {timeout_s if started_any else startup_timeout_s:g} s and was killed"
        else:
            ended = isolated.describe_exit(process.wait())
        tail = _tail(process.tail())
    ended_early = None
    if not started_any:
        ended_early = fatal or f"the check process {ended} before its first check{tail}"
    died_in = current
    for name in checks:
        if name in results:
            continue
        if ended_early is not None:
            results[name] = CheckResult(check=name, status="skipped", message=f"not run: {ended_early}"[:2000])
        elif name == died_in:
            results[name] = CheckResult(
                check=name, status="error", message=f"the skill's process {ended} during this check{tail}"
            )
        else:
            where = f"during {died_in}" if died_in else "before this check started"
            results[name] = CheckResult(
                check=name, status="skipped", message=f"not run: the skill's process {ended} {where}"
            )
    return CheckRun(results=[results[name] for name in checks], ended_early=ended_early)


def verdict(run: CheckRun) -> tuple[Status, str]:
    """The report's status and why: passed only when `loads` passed and no check failed or errored."""
    failed = [r.check for r in run.results if r.status == "failed"]
    errors = [r.check for r in run.results if r.status == "error"]
    if failed:
        return "failed", f"failed {', '.join(failed)}" + (f"; error in {', '.join(errors)}" if errors else "")
    if run.ended_early is not None:
        return "error", run.ended_early
    if errors:
        first = next(r for r in run.results if r.status == "error")
        return "error", f"error in {', '.join(errors)}: {first.message}"[:2000]
    loads = next((r for r in run.results if r.check == "loads"), None)
    if loads is None or loads.status != "passed":
        return "error", "loads did not run and pass, so nothing was tested"
    return "passed", "all checks passed"


def current_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def validate(
    skill_dir: str | Path,
    level: str = "basic",
    *,
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
    run_id: str | None = None,
    trigger: str = "cli",
    record: bool = True,
    progress: Progress | None = None,
) -> TestReport:
    """Test the skill in `skill_dir` at `level` and record the verdicts.

    Records a `test` run of its own unless `run_id` names the caller's run (a flow's). Raises
    SkillDirError for a folder that is not a skill, or an unknown level.
    """
    skill_dir = Path(skill_dir).expanduser().resolve()
    check_level(level)
    check_timeout(timeout_s)
    manifest = load_manifest(skill_dir)
    started = time.perf_counter()
    plain = manifest.model_dump(mode="json")
    stage = open_stage_run("test", skill_dir, plain, {"level": level}, run_id, trigger, record)
    run = run_checks(skill_dir, LEVELS[level], timeout_s, progress)
    results = run.results
    status, message = verdict(run)
    report = TestReport(
        run_id=stage.run_id,
        skill_id=manifest.skill_id,
        skill_path=skill_dir,
        target=manifest.target.target,
        level=level,
        status=status,
        message=message,
        checks=results,
        seconds=round(time.perf_counter() - started, 3),
    )
    if stage.store is not None:
        stage.store.record_checks(
            [
                CheckRecord(
                    run_id=stage.run_id,
                    skill_id=report.skill_id,
                    check=r.check,
                    status=r.status,
                    max_abs_diff=r.max_abs_diff,
                    max_rel_diff=r.max_rel_diff,
                    tolerance=r.tolerance,
                    duration_s=r.duration_s,
                    message=r.message,
                    details=r.details,
                )
                for r in results
            ]
        )
    stage.finish(report.passed, f"{level}: {message}")
    return report


@task(name="validate_skill", task_run_name="test {skill_dir} ({level})")
def validate_skill(skill_dir: str, level: str = "basic", timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> TestReport:
    """Prefect task: test a skill; the checks land in the results store under the current flow run.

    No retries: a check that fails fails the same way again.
    """
    run_id = current_flow_run_id()
    return validate(
        skill_dir,
        level,
        timeout_s=timeout_s,
        run_id=str(run_id) if run_id else None,
        trigger="prefect",
        progress=stage_progress("test", skill_dir=skill_dir),
    )
