"""`accel generate` and `accel templates`: make skills, and list what they are made from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json, human_bytes, progress_bar
from accel.tasks.errors import SkillDirError

if TYPE_CHECKING:
    from accel.tasks.generated import GeneratedSkill


def _summary(skill: GeneratedSkill) -> Table:
    m = skill.manifest
    validation, artifact = m["validation"], m["artifact"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("skill", f"{skill.skill_id}" + ("  (existing, reused)" if skill.reused else ""))
    grid.add_row("path", str(skill.path))
    grid.add_row("model", f"{m['model']['ref']} ({m['model']['architecture']}, {m['model']['family']})")
    grid.add_row("target", f"{m['target']['target']} on {m['target']['device']}")
    grid.add_row("artifact", f"{artifact['file']} ({human_bytes(artifact['bytes'])}, {artifact['exporter']})")
    tol = validation["tolerance"]
    grid.add_row(
        "vs reference",
        f"max |diff| {validation['max_abs_diff']:.2e} on batch {validation['check']['batch']}"
        + (f", seq {validation['check']['seq']}" if "seq" in validation["check"] else "")
        + f" (tolerance {tol['atol']:g} + {tol['rtol']:g} x |ref|)",
    )
    if validation.get("generation_tokens_equal") is not None:
        grid.add_row("generation", "greedy tokens equal transformers' generate")
    failed = [a for a in m["attempts"] if a["error"]]
    for attempt in failed:
        grid.add_row("fallback", f"{attempt['exporter']} failed: {attempt['error'].splitlines()[0][:160]}")
    grid.add_row("time", f"{skill.seconds:.1f} s")
    return grid


def writable_folder(path: Path, what: str) -> Path:
    """`path` as a folder this process can write skills into (made if missing), or SkillDirError saying why."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise SkillDirError(f"{what} {path} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SkillDirError(f"{what} {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SkillDirError(f"{what} {path} is not writable by this user")
    return path


def generate_command(
    ref: Annotated[str, typer.Argument(help="Model ref: local directory, packaged model, or Hub id.")],
    target: Annotated[str, typer.Option("--target", "-t", help="HARDWARE/RUNTIME[:PRECISION], e.g. cpu/onnxruntime")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to put the skill folder in (default $ACCEL_HOME/skills)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Generate again even if the skill exists.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Generate the standalone implementation (skill) of a model for one target, checked against the model."""
    if out is not None:  # before the generator's imports: bad input is refused at once
        writable_folder(out, "--out")
    from accel.tasks.generate import generate  # here: the generator imports torch
    from accel.tasks.generated import record_skill

    with progress_bar(json_output) as progress:
        task = progress.add_task("generate", total=1.0)
        skill = generate(
            ref,
            target,
            out_dir=out,
            force=force,
            progress=lambda step, done: progress.update(task, description=step, completed=done),
        )
    record_skill(skill)
    if json_output:
        emit_json(skill.model_dump(mode="json"))
        return
    console.print(_summary(skill))


def templates_command(json_output: JsonFlag = False) -> None:
    """List the skill templates: family, tasks, runtimes, and the targets this machine can run them on."""
    from accel.tasks.generate import template_catalogue

    entries = template_catalogue()
    if json_output:
        emit_json([e.model_dump() for e in entries])
        return
    table = Table(title="Skill templates", title_justify="left")
    for column in ("template", "family", "tasks", "runs here"):
        table.add_column(column, overflow="fold")
    for e in entries:
        here: dict[str, list[str]] = {}
        for target in e.targets_here:
            base, _, precision = target.partition(":")
            here.setdefault(base, []).append(precision or "fp32")
        runs = ", ".join(f"{base} ({'/'.join(p)})" for base, p in here.items()) or "-"
        table.add_row(f"{e.name} v{e.version}", e.family, ", ".join(e.tasks), runs)
    console.print(table)
    layouts = {tuple((rt, tuple(hw)) for rt, hw in e.hardware.items()) for e in entries}
    if len(layouts) == 1:  # every template composes the same runtimes: say it once
        console.print("runtimes: " + "; ".join(f"{rt} on {', '.join(hw)}" for rt, hw in entries[0].hardware.items()))
    else:
        for e in entries:
            console.print(f"{e.name}: " + "; ".join(f"{rt} on {', '.join(hw)}" for rt, hw in e.hardware.items()))
