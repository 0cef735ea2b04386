"""`accel hardware` and `accel targets`: what this machine has and which targets it can run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json, human_bytes
from accel.hardware import HardwareProfile, all_targets, detect, target_status, work_pool_name


def _summary(profile: HardwareProfile) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    host, cpu, mem = profile.host, profile.cpu, profile.memory
    grid.add_row("host", f"{host.hostname} ({host.os} {host.os_release}, Python {host.python})")
    cores = f"{cpu.physical_cores or '?'} physical / {cpu.logical_cores} logical"
    if cpu.usable_cores != cpu.logical_cores:
        cores += f" / {cpu.usable_cores} usable"
    grid.add_row("cpu", f"{cpu.model or 'unknown model'} ({cpu.architecture}), {cores} cores")
    grid.add_row(
        "vector",
        ", ".join(cpu.flags)
        or "none reported" + (f"  (torch kernels: {cpu.torch_capability})" if cpu.torch_capability else ""),
    )
    memory = f"{human_bytes(mem.total_bytes)} total, {human_bytes(mem.available_bytes)} available"
    if mem.cgroup_limit_bytes:
        memory += f", container limit {human_bytes(mem.cgroup_limit_bytes)}"
    grid.add_row("memory", memory)
    return grid


def _accelerators(profile: HardwareProfile) -> Table:
    table = Table(title="Accelerators", title_justify="left")
    for column in ("kind", "available", "devices / reason"):
        table.add_column(column)
    for name, accel in profile.accelerators.items():
        if accel.available:
            detail = "; ".join(
                f"{d.index}: {d.name}"
                + (f", {human_bytes(d.memory_bytes)}" if d.memory_bytes else "")
                + (f", sm {d.compute_capability}" if d.compute_capability else "")
                for d in accel.devices
            )
        else:
            detail = accel.reason or ""
        table.add_row(name, "[green]yes[/]" if accel.available else "[dim]no[/]", detail)
    return table


def _runtimes(profile: HardwareProfile) -> Table:
    table = Table(title="Runtimes", title_justify="left")
    for column in ("runtime", "version", "runs here", "reports"):
        table.add_column(column)
    for name, rt in profile.runtimes.items():
        runs = ", ".join(f"{hw} ({'/'.join(ps)})" for hw, ps in rt.precisions.items())
        table.add_row(name, rt.version or "-", runs or f"[dim]{rt.reason or 'nothing'}[/]", ", ".join(rt.devices))
    return table


def _targets(profile: HardwareProfile, show_all: bool) -> Table:
    table = Table(title="Targets" + (" (all)" if show_all else " this machine can run"), title_justify="left")
    for column in ("target", "work pool", "available", *(["reason"] if show_all else [])):
        table.add_column(column)
    for target in all_targets():
        status = target_status(target, profile)
        if status.available or show_all:
            row = [status.target, status.work_pool, "[green]yes[/]" if status.available else "[dim]no[/]"]
            table.add_row(*row, *([status.reason or ""] if show_all else []))
    return table


def _payload(profile: HardwareProfile) -> dict:
    return {
        **profile.model_dump(mode="json"),
        "hardware": profile.hardware,
        "work_pools": {hw: work_pool_name(hw) for hw in profile.hardware},
        "targets": [target_status(t, profile).model_dump() for t in all_targets()],
    }


def hardware(json_output: JsonFlag = False) -> None:
    """Detect this machine: CPU, memory, accelerators, runtimes, and the targets it can run."""
    profile = detect()
    if json_output:
        emit_json(_payload(profile))
        return
    console.print(_summary(profile))
    console.print(_accelerators(profile))
    console.print(_runtimes(profile))
    console.print(_targets(profile, show_all=False))


def targets(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list the targets this machine cannot run, and why.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List targets (HARDWARE/RUNTIME[:PRECISION]) with their work pool and availability here."""
    profile = detect()
    statuses = [target_status(t, profile) for t in all_targets()]
    if json_output:
        emit_json([s for s in statuses if s.available or show_all])
        return
    console.print(_targets(profile, show_all))
