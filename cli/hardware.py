"""`accel hardware` and `accel targets`: what this machine has and which targets it can run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json, human_bytes
from accel.hardware import HardwareProfile, all_targets, detect, target_status, work_pool_name
from accel.hardware.cpu import theoretical_peak_flops
from accel.hardware.memory_bandwidth import memory_bandwidth
from accel.hardware.peak_flops import cache_key, peak_flops, read_cache
from accel.settings import get_settings


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


def _peaks(probe: bool) -> dict:
    """The theoretical CPU peak and the probed ones (the quiet probes cached so far; one now if asked)."""
    cache_file = get_settings().cache_dir / "peak-flops.json"
    theoretical = theoretical_peak_flops("float32")
    fresh = None
    if probe:
        fresh = peak_flops("cpu", "float32", None, cache_file).model_dump()
    probes = [{"key": key, **entry} for key, entry in read_cache(cache_file).items()]
    if fresh and not fresh.get("quiet"):
        probes.append({"key": cache_key("cpu", "float32", None), **fresh})  # shown, not cached
    return {
        "theoretical_cpu_fp32": {"flops": theoretical[0], "basis": theoretical[1]} if theoretical else None,
        "probes": probes,
    }


def _share_of_theory(probe: dict) -> str:
    theory = theoretical_peak_flops(probe["dtype"], probe.get("threads")) if probe["device"] == "cpu" else None
    if not theory:
        return ""
    share = probe["flops"] / theory[0]
    if share > 1:  # the clock read is not the one the cores run at (a VM's nominal clock, boost)
        return (
            f"; {share:.0%} of the theoretical {theory[0] / 1e9:.1f} for its cores: measured past it, so the "
            "clock it assumes is below the one the cores run at (boost); the measured peak is the one MFU uses"
        )
    return f"; {share:.0%} of the theoretical {theory[0] / 1e9:.1f} for its cores"


def _peak_table(peaks: dict) -> Table:
    table = Table(title="Peak FLOP/s", title_justify="left")
    for column in ("kind", "device", "dtype", "threads", "GFLOP/s", "spread", "others' CPU", "basis / when"):
        table.add_column(column, overflow="fold")
    theory = peaks["theoretical_cpu_fp32"]
    if theory:
        table.add_row("theoretical", "cpu", "float32", "all", f"{theory['flops'] / 1e9:.1f}", "", "", theory["basis"])
    for p in peaks["probes"]:
        kind = "probed" + ("" if p.get("quiet") else " [yellow](contended: not cached)[/]")
        table.add_row(
            kind,
            p["device"],
            p["dtype"],
            str(p.get("threads") or "default"),
            f"{p['flops'] / 1e9:.1f}",
            f"{p['spread']:.1%}",
            f"{p['foreign_share']:.0%}" if p.get("foreign_share") is not None else "?",
            p.get("probed_at", "") + _share_of_theory(p),
        )
    if not peaks["probes"]:
        table.add_row(
            "probed", "-", "-", "-", "-", "", "", "no quiet probe yet: `accel bench` or `accel hardware --probe`"
        )
    return table


def _bandwidths(probe: bool) -> list[dict]:
    """The quiet memory bandwidth probes cached so far (one now if asked), as the decode's utilisation uses them."""
    cache_file = get_settings().cache_dir / "memory-bandwidth.json"
    fresh = memory_bandwidth(None, cache_file).model_dump() if probe else None
    probes = [{"key": key, **entry} for key, entry in read_cache(cache_file).items()]
    if fresh and not fresh.get("quiet"):
        probes.append({"key": "(contended: not cached)", **fresh})
    return probes


def _bandwidth_table(probes: list[dict]) -> Table:
    table = Table(title="Memory bandwidth", title_justify="left")
    for column in ("threads", "GB/s", "kernel", "spread", "others' CPU", "basis / when"):
        table.add_column(column, overflow="fold")
    for p in probes:
        table.add_row(
            str(p.get("threads") or "default"),
            f"{p['bytes_per_s'] / 1e9:.1f}",
            p["kernel"],
            f"{p['spread']:.1%}",
            f"{p['foreign_share']:.0%}" if p.get("foreign_share") is not None else "?",
            f"{p['basis']}; {p.get('probed_at', '')}",
        )
    if not probes:
        table.add_row("-", "-", "", "", "", "no quiet probe yet: `accel bench` of a generate point, or --probe")
    return table


def _payload(profile: HardwareProfile, peaks: dict, bandwidths: list[dict]) -> dict:
    return {
        **profile.model_dump(mode="json"),
        "peak_flops": peaks,
        "memory_bandwidth": bandwidths,
        "hardware": profile.hardware,
        "work_pools": {hw: work_pool_name(hw) for hw in profile.hardware},
        "targets": [target_status(t, profile).model_dump() for t in all_targets()],
    }


def hardware(
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="Measure the CPU's peak FLOP/s and memory bandwidth now (GEMM and copy probes, ~7 s)."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Detect this machine: CPU, memory, accelerators, runtimes, peak FLOP/s, memory bandwidth, and the targets
    it can run."""
    profile = detect()
    peaks, bandwidths = _peaks(probe), _bandwidths(probe)
    if json_output:
        emit_json(_payload(profile, peaks, bandwidths))
        return
    console.print(_summary(profile))
    console.print(_peak_table(peaks))
    console.print(_bandwidth_table(bandwidths))
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
