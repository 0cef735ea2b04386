"""One measurement row from a point's rounds: statistics, measured contention, and every reason to distrust it.

A row is `noisy`, with the reasons in `noise_reason`, when any round was timed while other processes
used more than `max_foreign_share` of its cores (or the hypervisor stole more than `max_steal_share`,
or other processes held the GPU), when the rounds' medians disagree by more than `noise_cv`, or when a
figure is physically impossible (a latency that is not positive, an MFU or a decode's bandwidth utilisation
above 100%): such a figure is a bug to report, so it is withheld, never printed. The load average is kept
as context only.
Throughput, tokens/s and MFU all divide by the same statistic: the median latency. A generate row holds
the time to first token (prefill_ms), the time per output token (decode_ms_per_token), generated tokens/s
and the decode's memory-bandwidth utilisation (bandwidth.py) in place of an MFU.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from accel.hardware.memory_bandwidth import BandwidthProbe
from accel.hardware.peak_flops import PeakProbe
from accel.storage import MeasurementRecord, summarize
from accel.tasks.benchmark.bandwidth import set_bandwidth_utilization
from accel.tasks.benchmark.config import BenchConfig, point_seq

TEXT_FAMILIES = ("text-encoder", "text-generation", "text2text")


def _contention_reasons(config: BenchConfig, rounds: list[dict[str, Any]]) -> list[str]:
    reasons = []
    for number, found in enumerate(rounds, 1):
        c = found.get("contention")
        if not c:
            continue
        if c["foreign_share"] > config.max_foreign_share:
            reasons.append(
                f"other processes used {c['foreign_share']:.0%} of the {c['cores']} cores while round {number} "
                f"was timed (more than {config.max_foreign_share:.0%})"
            )
        if c["steal_share"] > config.max_steal_share:
            reasons.append(f"the hypervisor stole {c['steal_share']:.0%} of the cores during round {number}")
        if c.get("foreign_device_pids"):
            reasons.append(f"other processes on the GPU during round {number}: pids {c['foreign_device_pids']}")
    return reasons


def _round_summary(found: dict[str, Any]) -> dict[str, Any]:
    stats = summarize([s * 1000 for s in found["samples"]])
    summary = {"p50_ms": stats.p50, "mean_ms": stats.mean, "cv": stats.cv, "count": stats.count}
    summary.update(start=found["start"], end=found["end"], load_s=found["load_s"], contention=found.get("contention"))
    return summary


def build_row(
    run_id: str,
    manifest: dict[str, Any],
    point: dict[str, Any],
    rounds: list[dict[str, Any]],
    config: BenchConfig,
    flops: float | None,
    flop_basis: str | None,
    peak: PeakProbe | None,
    loads: list[float],
    waited_s: float,
    bandwidth: BandwidthProbe | None = None,
    bandwidth_error: str | None = None,
) -> MeasurementRecord:
    """The row of a point from the rounds measured so far (a failed round makes the row that failure)."""
    seq = point_seq(manifest, point)
    base = {
        "run_id": run_id,
        "skill_id": manifest["skill_id"],
        "scenario": point["scenario"],
        "batch": point["batch"],
        "seq": seq,
        "threads": point["threads"],
        "warmup": point["warmup"],
        "load_before": loads[0] if loads else None,
        "load_after": max(loads[1:]) if len(loads) > 1 else None,
        "peak_rss_bytes": max((r["peak_rss_bytes"] for r in rounds if r.get("peak_rss_bytes")), default=None),
        "peak_flops": peak.flops if peak else None,
        "peak_flops_theoretical": peak.theoretical_flops if peak else None,
        "rounds": len(rounds),
    }
    details: dict[str, Any] = {"waited_for_device_s": round(waited_s, 3), "load_average": loads}
    failed = next((r for r in rounds if r["status"] != "ok"), None)
    if failed is not None:
        number = rounds.index(failed) + 1
        error = f"round {number} of {config.rounds}: {failed['error']}" if config.rounds > 1 else failed["error"]
        return MeasurementRecord(**base, status=failed["status"], error=error, details=details)
    per_round = [_round_summary(r) for r in rounds]
    samples_ms = [s * 1000 for r in rounds for s in r["samples"]]
    stats = summarize(samples_ms)
    batch = point["batch"]
    reasons = _contention_reasons(config, rounds)
    medians = [r["p50_ms"] for r in per_round]
    if len(medians) > 1 and float(np.std(medians, ddof=1) / np.mean(medians)) > config.noise_cv:
        spread = float(np.std(medians, ddof=1) / np.mean(medians))
        reasons.append(f"the rounds' medians vary by {spread:.1%} (cv) > {config.noise_cv:.0%}")
    if stats.min <= 0:
        reasons.append(f"impossible: a latency of {stats.min:.3g} ms (not positive): a timing bug, figures withheld")
    median_s = stats.p50 / 1000 if stats.p50 > 0 else None
    contentions = [r["contention"] for r in rounds if r.get("contention")]
    row: dict[str, Any] = {
        **base,
        "status": "ok",
        "iterations": stats.count,
        "load_s": float(np.median([r["load_s"] for r in rounds])),
        "first_call_ms": float(np.median([r["first_call_s"] for r in rounds])) * 1000,
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
        "round_p50_ms": medians,
        "samples_per_s": batch / median_s if median_s else None,
        "peak_accel_bytes": max((r.get("peak_accel_bytes") or 0 for r in rounds), default=0) or None,
        "foreign_cpu_share": max((c["foreign_share"] for c in contentions), default=None),
        "steal_share": max((c["steal_share"] for c in contentions), default=None),
    }
    details["throughput_basis"] = "samples/s, tokens/s and MFU divide by the median latency (p50)"
    if peak is not None:
        details["peak"] = peak.model_dump(exclude={"device", "dtype", "threads"})
    if point["scenario"] == "forward":
        if manifest["model"]["family"] in TEXT_FAMILIES and median_s:
            row["tokens_per_s"] = batch * seq / median_s
        if flops is not None:
            row["flops"] = flops
            details["flop_basis"] = flop_basis
            _set_mfu(row, details, reasons, flops, median_s, peak)
    else:  # as LLM-Perf: TTFT the median 1-token generate, TPOT (generate(n) - TTFT) / (n - 1), medians
        new_tokens = min(r["new_tokens"] for r in rounds)
        prefill = summarize([s * 1000 for r in rounds for s in r["prefill"]]).p50
        row["prefill_ms"] = prefill
        row["decode_ms_per_token"] = (stats.p50 - prefill) / (new_tokens - 1) if new_tokens > 1 else None
        row["tokens_per_s"] = batch * new_tokens / median_s if median_s else None
        row["new_tokens"] = details["new_tokens"] = new_tokens
        details["fixed_length"] = all(r.get("fixed_length") for r in rounds)
        if new_tokens < point["new_tokens"]:
            details["new_tokens_note"] = (
                f"asked for {point['new_tokens']}, decoded {new_tokens}: this skill's generate takes no "
                "min_new_tokens and stopped at its end-of-sequence token"
            )
        set_bandwidth_utilization(row, details, reasons, manifest, bandwidth, bandwidth_error)
    details.update(
        inputs=rounds[0]["inputs"],
        start=min(r["start"] for r in per_round),
        end=max(r["end"] for r in per_round),
        rounds=per_round,
        noise=reasons,
        cores=len(os.sched_getaffinity(0)),
    )
    return MeasurementRecord(**row, noisy=bool(reasons), noise_reason="; ".join(reasons) or None, details=details)


def _set_mfu(
    row: dict[str, Any],
    details: dict[str, Any],
    reasons: list[str],
    flops: float,
    median_s: float | None,
    peak: PeakProbe | None,
) -> None:
    if not median_s or peak is None or peak.flops <= 0:
        details["mfu_withheld"] = "no peak FLOP/s for this device" if median_s else "no positive latency"
        return
    if not peak.quiet:
        details["mfu_withheld"] = (
            f"the peak FLOP/s probe ran while other processes used {peak.foreign_share or 0:.0%} of the cores: "
            "an MFU against it would be too high (the next quiet run probes again)"
        )
        return
    mfu = flops / median_s / peak.flops
    if mfu > 1:
        reasons.append(
            f"impossible: MFU {mfu:.0%} > 100% ({flops:.3g} FLOPs in {median_s * 1000:.3g} ms against a peak of "
            f"{peak.flops:.3g} FLOP/s): a bug in the FLOP count or the peak, withheld"
        )
        details["mfu_withheld"] = f"computed {mfu:.4f}, above 1: physically impossible"
        return
    row["mfu"] = mfu
