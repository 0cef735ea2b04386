"""The benchmark stage: measurements an engineer can trust.

Each point (scenario x batch x sequence length) is measured in a fresh process (tasks/bench_runner)
while this process sleeps (the kernel keeps its peak RSS, read at the end); warmup first, then timed
calls until a minimum count AND a minimum duration are met, capped by a maximum duration. One
benchmark holds the device at a time. A point that crashes, runs out of memory or hangs becomes a
row with that status and its message, and the other points go on. Each row is recorded as soon as
its point finishes.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, Field

from accel.hardware.peak_flops import peak_flops
from accel.settings import get_settings
from accel.storage import MeasurementRecord, summarize
from accel.tasks.bench_runner import peak_rss_of
from accel.tasks.device_lock import device_slot
from accel.tasks.errors import SkillDirError
from accel.tasks.manifest import read_manifest
from accel.tasks.model_lock import MODEL_LOADING
from accel.tasks.progress import stage_progress
from accel.tasks.render import TORCH_DTYPES
from accel.tasks.stage_run import open_stage_run
from accel.tasks.validate import current_flow_run_id

Progress = Callable[[str, float], None]
EXIT_GRACE_S = 30.0  # after its report, a benchmark process gets this long to exit before it is killed
TEXT_FAMILIES = ("text-encoder", "text-generation", "text2text")


class BenchConfig(BaseModel):
    batches: list[int] = Field(default_factory=lambda: [1])
    seqs: list[int | None] = Field(default_factory=lambda: [None], description="None: the skill's default")
    scenarios: list[str] | None = Field(None, description="forward, generate; default: both where generative")
    warmup: int = Field(3, ge=0)
    min_iters: int = Field(10, ge=1)
    min_seconds: float = Field(2.0, ge=0)
    max_seconds: float = Field(60.0, gt=0)
    threads: int | None = Field(None, ge=1, description="Intra-op threads; default: the cores usable here")
    new_tokens: int = Field(16, ge=1)
    point_timeout_s: float | None = Field(None, gt=0, description="Default: max_seconds + 180 s to load")
    noise_cv: float = Field(0.10, gt=0, description="A coefficient of variation above this is noisy")


class BenchReport(BaseModel):
    run_id: str
    skill_id: str
    target: str
    measurements: list[MeasurementRecord]
    seconds: float


def _reap(process: subprocess.Popen, grace_s: float) -> int:
    """Wait for a benchmark process to end, killing its group after `grace_s`; its exit code."""
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _spawn_point(skill_dir: Path, point: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one point in a fresh process; what it reported (its peak RSS included), or why it has nothing."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accel.tasks.bench_runner",
                str(skill_dir),
                "--point",
                json.dumps(point),
                "--report-fd",
                str(write_fd),
            ],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            env=env,
            start_new_session=True,
        )
        os.close(write_fd)
        data = b""
        deadline = time.monotonic() + timeout_s
        timed_out = False
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            while True:  # blocks in select: this process takes no CPU from the measurement
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    timed_out, peak = True, peak_rss_of(process.pid)
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        os.close(read_fd)
        code = _reap(process, EXIT_GRACE_S)
        stderr_file.seek(0)
        stderr = stderr_file.read().decode(errors="replace").strip().splitlines()
    if timed_out:
        return {
            "status": "timeout",
            "error": f"no result within {timeout_s:.0f} s; the process was killed",
            "peak_rss_bytes": peak,
        }
    if data.strip():
        return json.loads(data)
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    tail = " / ".join(stderr[-6:])
    status = "oom" if code == -signal.SIGKILL else "error"  # the kernel's OOM killer sends SIGKILL
    return {"status": status, "error": f"the benchmark process {how} without a result. {tail}"[:2000]}


def count_flops(manifest: dict[str, Any], shapes: list[tuple[int, int | None]]) -> dict[tuple, float | None]:
    """FLOPs of one forward call per (batch, seq), counted on the reference model with torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from accel.tasks.reference import pristine_module

    found: dict[tuple, float | None] = {}
    try:
        pristine = pristine_module(manifest)
        with MODEL_LOADING:
            reference = pristine.build_reference()
    except Exception:  # no reference model here: FLOPs stay unknown, never guessed
        return {shape: None for shape in shapes}
    weight = next(reference.parameters())
    for batch, seq in shapes:
        feeds = pristine.make_inputs(batch, seq, 0)
        tensors = {k: torch.from_numpy(v).to(weight.device) for k, v in feeds.items()}
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            reference(**tensors)
        found[(batch, seq)] = float(counter.get_total_flops())
    return found


def _points(config: BenchConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    generative = manifest.get("generation") is not None
    scenarios = config.scenarios or (["forward", "generate"] if generative else ["forward"])
    for scenario in scenarios:
        if scenario not in ("forward", "generate"):
            raise SkillDirError(f"unknown scenario {scenario!r}: accepted forward, generate")
        if scenario == "generate" and not generative:
            raise SkillDirError(f"{manifest['model']['task']} does not generate: only the forward scenario applies")
    seq_dim = manifest["dims"].get("seq")
    seqs = config.seqs if seq_dim else [None]  # a fixed-size input (images) has no sequence axis
    threads = config.threads or len(os.sched_getaffinity(0))
    return [
        {
            "scenario": scenario,
            "batch": batch,
            "seq": seq,
            "threads": threads,
            "warmup": config.warmup,
            "min_iters": config.min_iters,
            "min_seconds": config.min_seconds,
            "max_seconds": config.max_seconds,
            "new_tokens": config.new_tokens,
        }
        for scenario in scenarios
        for batch in config.batches
        for seq in seqs
    ]


def _point_seq(manifest: dict[str, Any], point: dict[str, Any]) -> int:
    """The seq a point is stored under: its own, else the skill's default length, 0 for no sequence axis."""
    if point["seq"] is not None:
        return int(point["seq"])
    return int((manifest["dims"].get("seq") or {}).get("default", 0) or 0)


def skipped_rows(skill_dir: str | Path, config: BenchConfig, run_id: str, reason: str) -> list[MeasurementRecord]:
    """One `skipped` row, with the reason, for every point `config` would have measured on this skill."""
    manifest = read_manifest(Path(skill_dir))
    return [
        MeasurementRecord(
            run_id=run_id,
            skill_id=manifest["skill_id"],
            scenario=point["scenario"],
            batch=point["batch"],
            seq=_point_seq(manifest, point),
            threads=point["threads"],
            status="skipped",
            error=reason,
        )
        for point in _points(config, manifest)
    ]


def _row(
    run_id: str,
    manifest: dict[str, Any],
    point: dict[str, Any],
    found: dict[str, Any],
    flops: float | None,
    peak: float | None,
    loads: tuple[float, float],
    noise_cv: float,
    waited_s: float,
) -> MeasurementRecord:
    seq = _point_seq(manifest, point)
    base = {
        "run_id": run_id,
        "skill_id": manifest["skill_id"],
        "scenario": point["scenario"],
        "batch": point["batch"],
        "seq": seq,
        "threads": point["threads"],
        "warmup": point["warmup"],
        "load_before": loads[0],
        "load_after": loads[1],
        "peak_rss_bytes": found.get("peak_rss_bytes"),
        "peak_flops": peak,
    }
    details: dict[str, Any] = {"waited_for_device_s": round(waited_s, 3)}
    if found["status"] != "ok":
        return MeasurementRecord(**base, status=found["status"], error=found["error"], details=details)
    samples_ms = [s * 1000 for s in found["samples"]]
    stats = summarize(samples_ms)
    batch = point["batch"]
    text = manifest["model"]["family"] in TEXT_FAMILIES
    row: dict[str, Any] = {
        **base,
        "status": "ok",
        "iterations": stats.count,
        "load_s": found["load_s"],
        "first_call_ms": found["first_call_s"] * 1000,
        "mean_ms": stats.mean,
        "std_ms": stats.std,
        "cv": stats.cv,
        "min_ms": stats.min,
        "p50_ms": stats.p50,
        "p90_ms": stats.p90,
        "p95_ms": stats.p95,
        "p99_ms": stats.p99,
        "max_ms": stats.max,
        "samples_ms": samples_ms,
        "samples_per_s": batch / (stats.mean / 1000),
        "peak_accel_bytes": found.get("peak_accel_bytes"),
    }
    if point["scenario"] == "forward":
        if text:
            row["tokens_per_s"] = batch * seq / (stats.mean / 1000)
        if flops is not None:
            row["flops"] = flops
            row["mfu"] = flops / (stats.p50 / 1000) / peak if peak else None
    else:
        new_tokens = found["new_tokens"]
        prefill = summarize([s * 1000 for s in found["prefill"]]).p50
        row["prefill_ms"] = prefill
        row["decode_ms_per_token"] = (stats.p50 - prefill) / (new_tokens - 1) if new_tokens > 1 else None
        row["tokens_per_s"] = batch * new_tokens / (stats.p50 / 1000)
        details["new_tokens"] = new_tokens
    reasons = []
    if stats.cv > noise_cv:
        reasons.append(f"coefficient of variation {stats.cv:.1%} > {noise_cv:.0%}")
    cores = len(os.sched_getaffinity(0))
    if max(loads) > cores * 0.75 + point["threads"]:
        reasons.append(
            f"load average {max(loads):.2f} on {cores} cores while measuring with {point['threads']} threads"
        )
    details.update(inputs=found["inputs"], start=found["start"], end=found["end"], noise=reasons)
    return MeasurementRecord(**row, noisy=bool(reasons), details=details)


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
    unless `run_id` names the caller's."""
    config = config or BenchConfig()
    skill_dir = Path(skill_dir).expanduser().resolve()
    manifest = read_manifest(skill_dir)
    points = _points(config, manifest)
    started = time.perf_counter()
    settings = get_settings()
    target = manifest["target"]
    stage = open_stage_run("benchmark", skill_dir, manifest, config.model_dump(), run_id, trigger, record)
    if progress:
        progress("count FLOPs on the reference model", 0.0)
    forward_shapes = sorted({(p["batch"], p["seq"]) for p in points if p["scenario"] == "forward"}, key=str)
    flops = count_flops(manifest, forward_shapes)
    dtype = TORCH_DTYPES[target["precision"]]
    device = "cuda" if target["hardware"] in ("cuda", "rocm") else target["hardware"]
    peak = peak_flops(device, dtype, points[0]["threads"], settings.cache_dir / "peak-flops.json")
    rows: list[MeasurementRecord] = []
    timeout_s = config.point_timeout_s or config.max_seconds + 180
    try:
        with device_slot(target["hardware"]) as waited:
            for number, point in enumerate(points):
                if progress:
                    progress(
                        f"{point['scenario']} batch {point['batch']} seq {point['seq'] or '-'}",
                        number / len(points),
                    )
                before = os.getloadavg()[0]
                found = _spawn_point(skill_dir, point, timeout_s)
                row = _row(
                    stage.run_id,
                    manifest,
                    point,
                    found,
                    flops.get((point["batch"], point["seq"])),
                    peak,
                    (before, os.getloadavg()[0]),
                    config.noise_cv,
                    waited,
                )
                rows.append(row)
                if stage.store is not None:
                    stage.store.record_measurements([row])  # now, not at the end: a crash later loses nothing
                if on_measurement:
                    on_measurement(row)
    finally:
        bad = [f"{r.scenario} b{r.batch} s{r.seq}: {r.status}" for r in rows if r.status != "ok"]
        done = len(rows) == len(points)
        stage.finish(done and not bad, "; ".join(bad) if bad else (f"{len(rows)} points" if done else "interrupted"))
    return BenchReport(
        run_id=stage.run_id,
        skill_id=manifest["skill_id"],
        target=target["target"],
        measurements=rows,
        seconds=round(time.perf_counter() - started, 3),
    )


@task(name="benchmark_skill", task_run_name="benchmark {skill_dir}")
def benchmark_skill(skill_dir: str, config: BenchConfig | None = None) -> BenchReport:
    """Prefect task: benchmark a skill; each point's row lands in the results store as it finishes.

    No retries: a point that crashes or times out is a result, recorded as such.
    """
    run_id = current_flow_run_id()
    return benchmark(
        skill_dir,
        config,
        run_id=str(run_id) if run_id else None,
        trigger="prefect",
        progress=stage_progress("benchmark", skill_dir=skill_dir),
    )
