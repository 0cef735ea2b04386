"""`accel run`: the whole pipeline (generate -> test -> benchmark) for models x targets, with live progress.

Runs against the Prefect server of PREFECT_API_URL, else the one `accel up` started on this machine,
else an ephemeral one (its state under $ACCEL_HOME/prefect).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from accel.cli.bench import _ints
from accel.cli.output import JsonFlag, console, emit_json, err_console, progress_bar
from accel.hardware import parse_targets
from accel.tasks.levels import LEVEL_NAMES, check_level

LOCAL_PREFECT = "http://127.0.0.1:4200/api"


def prefect_api() -> str | None:
    """The Prefect API to run against, or None for an ephemeral server."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        if httpx.get(f"{LOCAL_PREFECT}/health", timeout=0.5).status_code == 200:
            return LOCAL_PREFECT
    except httpx.HTTPError:
        pass
    return None


def note(r: Any) -> str:
    """A target's flag (noisy and why, a withheld MFU), then its message when it did not pass."""
    parts = []
    if r.noisy:
        parts.append(f"NOISY: {r.noise_reason or 'flagged'}")
    elif r.noisy_points:
        parts.append(f"{r.noisy_points} other point(s) noisy")
    if r.mfu_withheld:
        parts.append(f"MFU withheld: {r.mfu_withheld}")
    if r.status != "passed":
        parts.append(r.message)
    return ". ".join(parts)


def _table(result: Any) -> Table:
    table = Table(title=f"pipeline {result.run_id}", title_justify="left")
    for column in ("model", "target", "status", "checks", "shape", "p50 ms", "tokens/s", "MFU", "note"):
        table.add_column(column, overflow="fold")
    for r in result.results:
        style = "green" if r.status == "passed" else "red"
        table.add_row(
            r.model,
            r.target,
            f"[{style}]{r.status}[/]",
            f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
            f"b{r.batch} s{r.seq}" if r.batch else "-",
            (f"{r.p50_ms:.2f}" + (" [yellow](noisy)[/]" if r.noisy else "")) if r.p50_ms is not None else "-",
            f"{r.tokens_per_s:.0f}" if r.tokens_per_s else "-",
            "withheld" if r.mfu_withheld else (f"{r.mfu:.2%}" if r.mfu is not None else "-"),
            note(r),
        )
    return table


def run_command(
    models: Annotated[list[str], typer.Argument(help="Model refs: local directories, packaged models, Hub ids.")],
    targets: Annotated[str, typer.Option("--targets", "-t", help="Comma-separated HARDWARE/RUNTIME[:PRECISION].")],
    level: Annotated[
        str, typer.Option("--level", "-l", help=f"Test level: {', '.join(LEVEL_NAMES)}.")
    ] = "comprehensive",
    batch: Annotated[str, typer.Option("--batch", help="Benchmark batch sizes.")] = "1,8",
    seq: Annotated[str, typer.Option("--seq", help="Benchmark sequence lengths.")] = "128",
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="Per benchmark point.")] = 2.0,
    force: Annotated[bool, typer.Option("--force", help="Generate the skills again.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Generate, test and benchmark MODELS on every target; a table per target at the end."""
    parsed = [str(t) for t in parse_targets(targets)]  # bad input fails before Prefect starts
    check_level(level)
    bench = {"batches": _ints(batch, "--batch"), "seqs": _ints(seq, "--seq"), "min_seconds": min_seconds}
    from accel.tasks.resolve import resolve_model

    for ref in models:  # a ref that names nothing is bad input, refused before any run starts
        resolve_model(ref)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from accel.flows.pipeline import pipeline
    from accel.tasks.progress import add_listener, remove_listener

    api = prefect_api()
    err_console.print(f"Prefect: {api or 'an ephemeral server (start one that stays with `accel up`)'}")
    with progress_bar(json_output, bar=False) as progress:
        task = progress.add_task("starting", total=None)
        current = {"chain": ""}

        def show(payload: dict[str, Any]) -> None:
            if payload.get("model") and payload.get("target"):
                current["chain"] = f"{payload['model']} on {payload['target']}"
            progress.update(task, description=f"{current['chain']}: {payload['stage']} {payload['step']}")

        add_listener(show)
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}) if api else nullcontext():
                result = pipeline(models=models, targets=parsed, level=level, bench=bench, force=force, trigger="cli")
        finally:
            remove_listener(show)
    if json_output:
        emit_json(result.model_dump(mode="json"))
    else:
        console.print(_table(result))
    if result.status != "passed":
        raise typer.Exit(1)
