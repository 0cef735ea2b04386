"""`accel test`: run the test stage's checks on a skill and show every verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json, progress_bar
from accel.cli.skills import skill_dir_or_generate
from accel.tasks.checks import DEFAULT_CHECK_TIMEOUT_S, LEVELS, MIN_CHECK_TIMEOUT_S, check_timeout
from accel.tasks.levels import check_level

if TYPE_CHECKING:
    from accel.tasks.validate import TestReport

_STYLE = {"passed": "green", "failed": "red", "error": "bold red", "skipped": "dim"}


def _table(report: TestReport) -> Table:
    table = Table(
        title=f"{report.target} · {report.level} · skill {report.skill_id} · run {report.run_id}",
        title_justify="left",
    )
    for column in ("check", "status", "max |diff|", "tolerance", "s", "message"):
        table.add_column(column, overflow="fold")
    for c in report.checks:
        table.add_row(
            c.check,
            f"[{_STYLE[c.status]}]{c.status}[/]",
            f"{c.max_abs_diff:.2e}" if c.max_abs_diff is not None else "",
            f"{c.tolerance:g}" if c.tolerance is not None else "",
            f"{c.duration_s:.2f}",
            c.message,
        )
    return table


def test_command(
    skill: Annotated[str, typer.Argument(help="A skill directory, or a model ref (then --target is needed).")],
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="With a model ref: generate the skill for this target first."),
    ] = None,
    level: Annotated[str, typer.Option("--level", "-l", help=f"Which checks: {', '.join(LEVELS)}.")] = "basic",
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help=f"Seconds one check may take before it is an error (at least {MIN_CHECK_TIMEOUT_S:g}; "
            "the check process's start-up has a bound of its own).",
        ),
    ] = DEFAULT_CHECK_TIMEOUT_S,
    json_output: JsonFlag = False,
) -> None:
    """Test a skill against its reference model; exit 0 when it passed, 1 when a check failed or errored."""
    from accel.tasks.validate import validate  # here: the stage imports prefect

    check_level(level)
    check_timeout(timeout)
    with progress_bar(json_output, bar=False) as progress:
        task = progress.add_task("test", total=1.0)
        path = skill_dir_or_generate(skill, target, "test", lambda step, _: progress.update(task, description=step))
        report = validate(
            path,
            level,
            timeout_s=timeout,
            progress=lambda check, done: progress.update(task, description=f"check {check}"),
        )
    if json_output:
        emit_json(report.model_dump(mode="json"))
    else:
        console.print(_table(report))
        if not report.passed:
            console.print(f"[{_STYLE[report.status]}]{report.status}[/]: {report.message}")
    if not report.passed:
        raise typer.Exit(1)
