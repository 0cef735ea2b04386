"""The benchmark stage: measurements an engineer can trust.

Each point (scenario x batch x sequence length) is measured in R interleaved rounds (round 1 of every
point, then round 2, ...), each round a fresh process (tasks/bench_runner) while this process sleeps:
warmup, then timed calls until a minimum count AND a minimum duration are met, capped by a maximum.
Between-process variation is what verdicts must see (storage/stats.compare_rounds), and interleaving
spreads a slow minute of the machine over every point instead of one. Requests that cannot be measured
are refused before any work (config.check_request). Inside the device slot: FLOP counting (isolated),
the peak FLOP/s probe (a warm fork), the memory bandwidth probe where a point generates, then the rounds. A point that
crashes, runs out of memory or hangs becomes a row with that status and its message, and the other points
go on. Rows are recorded as each round lands, and a stage that dies closes its run row as failed, with
the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from accel.hardware.memory_bandwidth import BandwidthProbe, memory_bandwidth
from accel.hardware.peak_flops import PeakProbe, peak_flops
from accel.hardware.targets import TORCH_DTYPES
from accel.settings import get_settings
from accel.storage import MeasurementRecord
from accel.tasks.benchmark.config import BenchConfig, BenchReport, check_request, plan_points
from accel.tasks.benchmark.flops import count_flops
from accel.tasks.benchmark.process import spawn_point
from accel.tasks.benchmark.rows import build_row
from accel.tasks.device_lock import device_slot
from accel.tasks.isolated.call import call
from accel.tasks.manifest import read_manifest
from accel.tasks.reference import REFERENCE_PRELOAD
from accel.tasks.stage_run import open_stage_run

Progress = Callable[[str, float], None]


def _peak_probe_forked(**probe: object) -> dict:
    """The GEMM probe in a child of the warm server that has imported every runtime (the one the checks
    and FLOP counting fork from): about 1 s of products, not 3.4 s of a fresh interpreter's imports too."""
    return call("accel.hardware.peak_flops:probe_here", REFERENCE_PRELOAD, **probe)


def _probe_peak(target: dict, threads: int, config: BenchConfig) -> tuple[PeakProbe | None, str | None]:
    device = "cuda" if target["hardware"] in ("cuda", "rocm") else target["hardware"]
    try:
        probe = peak_flops(
            device,
            TORCH_DTYPES[target["precision"]],
            threads,
            get_settings().cache_dir / "peak-flops.json",
            max_foreign_share=config.max_foreign_share,
            run_probe=_peak_probe_forked,
        )
    except Exception as err:  # no torch for this device here: MFU stays unknown, never guessed
        return None, f"{type(err).__name__}: {err}"[:500]
    return probe, None


def _probe_bandwidth(target: dict, threads: int, config: BenchConfig) -> tuple[BandwidthProbe | None, str | None]:
    if target["hardware"] != "cpu":  # the probe measures host memory; a device's own is not probed yet
        return None, f"the bandwidth probe measures host memory, not {target['hardware']} device memory"
    try:
        probe = memory_bandwidth(
            threads, get_settings().cache_dir / "memory-bandwidth.json", max_foreign_share=config.max_foreign_share
        )
    except Exception as err:  # the probe process failed: utilisation stays unknown, never guessed
        return None, f"{type(err).__name__}: {err}"[:500]
    return probe, None


def benchmark(
    skill_dir: str | Path,
    config: BenchConfig | None = None,
    *,
    run_id: str | None = None,
    trigger: str = "cli",
    record: bool = True,
    progress: Progress | None = None,
    on_measurement: Callable[[MeasurementRecord], None] | None = None,
) -> BenchReport:
    """Measure the skill in `skill_dir` at every point of `config`; records a `benchmark` run of its own
    unless `run_id` names the caller's. SkillDirError (before any work) for a request that cannot be met."""
    config = config or BenchConfig()
    skill_dir = Path(skill_dir).expanduser().resolve()
    manifest = read_manifest(skill_dir)
    points = plan_points(config, manifest)
    check_request(config, manifest, points)
    started = time.perf_counter()
    target = manifest["target"]
    stage = open_stage_run("benchmark", skill_dir, manifest, config.model_dump(), run_id, trigger, record)
    rows: dict[int, MeasurementRecord] = {}
    timeout_s = config.point_timeout_s or config.max_seconds + 180
    steps = len(points) * config.rounds
    try:
        with device_slot(target["hardware"]) as waited:
            if progress:
                progress("count FLOPs on the reference model", 0.0)
            shapes = sorted({(p["batch"], p["seq"]) for p in points if p["scenario"] == "forward"}, key=str)
            flops, flop_basis = count_flops(skill_dir, shapes) if config.flops else ({}, None)
            if progress:
                progress("probe the peak FLOP/s", 0.0)
            peak, peak_error = _probe_peak(target, points[0]["threads"], config)
            bandwidth, bandwidth_error = None, None
            if any(p["scenario"] == "generate" for p in points):
                if progress:
                    progress("probe the memory bandwidth", 0.0)
                bandwidth, bandwidth_error = _probe_bandwidth(target, points[0]["threads"], config)
            rounds: dict[int, list[dict]] = {i: [] for i in range(len(points))}
            loads: dict[int, list[float]] = {i: [] for i in range(len(points))}
            for number in range(config.rounds):
                for i, point in enumerate(points):
                    if any(r["status"] != "ok" for r in rounds[i]):
                        continue  # a point that failed stays failed; its later rounds are not run
                    if progress:
                        done = (number * len(points) + i) / steps
                        progress(
                            f"{point['scenario']} batch {point['batch']} seq {point['seq'] or '-'} "
                            f"round {number + 1}/{config.rounds}",
                            done,
                        )
                    loads[i].append(os.getloadavg()[0])
                    rounds[i].append(spawn_point(skill_dir, point, timeout_s, target["runtime"]))
                    loads[i].append(os.getloadavg()[0])
                    row = build_row(
                        stage.run_id,
                        manifest,
                        point,
                        rounds[i],
                        config,
                        flops.get((point["batch"], point["seq"])),
                        flop_basis,
                        peak,
                        loads[i],
                        waited,
                        bandwidth,
                        bandwidth_error,
                    )
                    if peak_error:
                        row.details["peak_error"] = peak_error
                    rows[i] = row
                    if stage.store is not None:
                        stage.store.record_measurements([row])  # now, not at the end: a crash later loses nothing
                    final = number == config.rounds - 1 or row.status != "ok"
                    if final and on_measurement:
                        on_measurement(row)
    except BaseException as err:
        stage.finish(False, f"the benchmark stage died: {type(err).__name__}: {err}"[:2000])
        raise
    measured = [rows[i] for i in sorted(rows)]
    bad = [f"{r.scenario} b{r.batch} s{r.seq}: {r.status}" for r in measured if r.status != "ok"]
    stage.finish(not bad, "; ".join(bad) if bad else f"{len(measured)} points, {config.rounds} rounds each")
    return BenchReport(
        run_id=stage.run_id,
        skill_id=manifest["skill_id"],
        target=target["target"],
        measurements=measured,
        seconds=round(time.perf_counter() - started, 3),
    )
