"""`accel models ...`: resolve model refs to local directories and say what they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json
from accel.hardware import detect, parse_targets, target_status

if TYPE_CHECKING:
    from accel.tasks.resolve import ResolvedModel

models_app = typer.Typer(help="Resolve and inspect models.", no_args_is_help=True)


def _describe(model: ResolvedModel) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    source = model.source + (f" ({model.origin})" if model.origin else "")
    rows = [
        ("path", str(model.path)),
        ("source", source),
        ("revision", model.revision),
        ("family", model.family),
        ("task", model.task),
        (
            "architecture",
            f"{model.architecture} (model type {model.model_type}, loads with {model.auto_class})",
        ),
        (
            "parameters",
            f"{model.parameters_human} ({model.parameters:,}, from {model.parameters_source})"
            if model.parameters is not None
            else "unknown (no safetensors, and the model class cannot be built here)",
        ),
    ]
    if model.dtype:
        rows.append(("dtype", model.dtype))
    if model.weights_note:
        rows.append(("weights", model.weights_note))
    for key, value in rows:
        grid.add_row(key, value)
    return grid


@models_app.command("resolve")
def resolve(
    ref: Annotated[str, typer.Argument(help="Local directory, packaged model, or Hugging Face Hub id[@revision].")],
    download: Annotated[
        bool,
        typer.Option("--download", help="Download from the Hub when the model is not in the local cache."),
    ] = False,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow a model's own code to run (off unless asked).")
    ] = False,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            help="Also say whether this machine can run the model on these targets "
            "(HARDWARE/RUNTIME[:PRECISION], repeat or comma-separate).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Resolve REF to a local directory; print its path, revision, family, task, architecture and size."""
    from accel.tasks.resolve import resolve_model  # here: resolution imports transformers

    targets = parse_targets(target) if target else []  # bad targets fail before any slow work
    model = resolve_model(ref, allow_download=download or None, trust_remote_code=trust_remote_code)
    statuses = []
    if targets:
        profile = detect()
        statuses = [target_status(t, profile) for t in targets]
    if json_output:
        payload = model.model_dump(mode="json") | {"parameters_human": model.parameters_human}
        if targets:
            payload["targets"] = [s.model_dump() for s in statuses]
        emit_json(payload)
        return
    console.print(f"[bold]{model.ref}[/]")
    console.print(_describe(model))
    for status in statuses:
        here = "[green]runs here[/]" if status.available else f"[yellow]not here[/]: {status.reason}"
        console.print(f"  {status.target:<22} pool {status.work_pool:<11} {here}")
