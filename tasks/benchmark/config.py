"""What a benchmark is asked to measure (`BenchConfig`), its answer (`BenchReport`), and the refusal of
requests that cannot be measured, before any work is done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, Field

from accel.storage import MeasurementRecord
from accel.tasks.errors import SkillDirError

MAX_ROUNDS = 20
MAX_BATCH = 65536  # past any real inference batch; smaller ones are judged by the memory estimate below
# The generate scenario's defaults are the Hugging Face LLM-Perf leaderboard's (batch 1, a 256-token
# prompt, 64 new tokens, greedy, a fixed length), plus batch 4.
GENERATE_BATCHES = (1, 4)
PROMPT_TOKENS = 256
NEW_TOKENS = 64


class BenchConfig(BaseModel):
    batches: list[int] = Field(default_factory=lambda: [1], description="The forward scenario's batch sizes")
    seqs: list[int | None] = Field(
        default_factory=lambda: [None], description="The forward scenario's lengths; None: the skill's default"
    )
    scenarios: list[str] | None = Field(None, description="forward, generate; default: both where generative")
    warmup: int = Field(3, ge=0)
    min_iters: int = Field(10, ge=1, description="Per round")
    min_seconds: float = Field(2.0, ge=0, description="Per round")
    max_seconds: float = Field(60.0, gt=0, description="Per round")
    threads: int | None = Field(None, ge=1, description="Intra-op threads; default: the cores usable here")
    generate_batches: list[int] = Field(
        default_factory=lambda: list(GENERATE_BATCHES), description="The generate scenario's batch sizes"
    )
    prompt_tokens: int | None = Field(
        None,
        ge=1,
        description=f"The generate scenario's prompt length; None: {PROMPT_TOKENS}, or less where the model's "
        "positions end sooner (said in the row's details)",
    )
    new_tokens: int = Field(
        NEW_TOKENS, ge=1, description="Tokens each generate call decodes: this many exactly, where the skill can"
    )
    point_timeout_s: float | None = Field(None, gt=0, description="Per round; default: max_seconds + 180 s to load")
    flops: bool = Field(True, description="Count FLOPs on the reference model (and so MFU); False skips it")
    rounds: int = Field(
        3,
        description="Each point is measured in this many interleaved rounds, each a process of its own; "
        "verdicts compare the rounds' medians (the variation between processes).",
    )
    max_foreign_share: float = Field(
        0.10,
        ge=0,
        le=1,
        description="A round timed while other processes used more than this share of its cores is noisy",
    )
    max_steal_share: float = Field(0.10, ge=0, le=1, description="... or while the hypervisor stole this share")
    noise_cv: float = Field(
        0.10, gt=0, description="Round medians varying more than this (their coefficient of variation) are noisy"
    )


class BenchReport(BaseModel):
    run_id: str
    skill_id: str
    target: str
    measurements: list[MeasurementRecord]
    seconds: float


def _max_positions(manifest: dict[str, Any]) -> int | None:
    return (manifest["dims"].get("seq") or {}).get("max")


def prompt_tokens(config: BenchConfig, manifest: dict[str, Any]) -> int:
    """The generate scenario's prompt: as asked, else the leaderboard's, shortened to leave room for the
    new tokens in the model's positions (an explicit prompt past them is refused by check_request)."""
    if config.prompt_tokens is not None:
        return config.prompt_tokens
    limit = _max_positions(manifest)
    return max(1, min(PROMPT_TOKENS, limit - config.new_tokens)) if limit else PROMPT_TOKENS


def _shapes(config: BenchConfig, manifest: dict[str, Any], scenario: str) -> list[tuple[int, int | None]]:
    if scenario == "generate":
        return [(batch, prompt_tokens(config, manifest)) for batch in config.generate_batches]
    seqs = config.seqs if manifest["dims"].get("seq") else [None]  # a fixed-size input (images) has no seq axis
    return [(batch, seq) for batch in config.batches for seq in seqs]


def plan_points(config: BenchConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point (scenario x batch x seq) the config asks of this skill, as the runner takes it."""
    generative = manifest.get("generation") is not None
    scenarios = config.scenarios or (["forward", "generate"] if generative else ["forward"])
    for scenario in scenarios:
        if scenario not in ("forward", "generate"):
            raise SkillDirError(f"unknown scenario {scenario!r}: accepted forward, generate")
        if scenario == "generate" and not generative:
            raise SkillDirError(f"{manifest['model']['task']} does not generate: only the forward scenario applies")
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
        for batch, seq in _shapes(config, manifest, scenario)
    ]


def point_seq(manifest: dict[str, Any], point: dict[str, Any]) -> int:
    """The seq a point is stored under: its own, else the skill's default length, 0 for no sequence axis."""
    if point["seq"] is not None:
        return int(point["seq"])
    return int((manifest["dims"].get("seq") or {}).get("default", 0) or 0)


def _model_config(manifest: dict[str, Any]) -> dict[str, Any]:
    try:
        config = json.loads((Path(manifest["model"]["path"]) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config.get("text_config") or config  # a vision-text model: its text tower sizes the activations


def _first(config: dict[str, Any], *names: str) -> int:
    return next((int(config[n]) for n in names if isinstance(config.get(n), int)), 0)


def estimated_bytes(manifest: dict[str, Any], batch: int, seq: int) -> int | None:
    """A rough floor on the memory one forward call needs: weights + one layer's activations (fp32,
    eager attention scores and probabilities). None where the model's sizes cannot be read."""
    config = _model_config(manifest)
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    if not hidden or not seq:
        return None
    heads = _first(config, "num_attention_heads", "n_head", "encoder_attention_heads") or 1
    inner = _first(config, "intermediate_size", "n_inner", "d_ff", "encoder_ffn_dim") or 4 * hidden
    weights = int(manifest["artifact"].get("bytes") or 4 * (manifest["model"].get("parameters") or 0))
    return weights + 4 * batch * (seq * (12 * hidden + 2 * inner) + 2 * heads * seq * seq)


def memory_available() -> int:
    """Bytes a new process may use here: what is free, within the container's limit."""
    available = psutil.virtual_memory().available
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            available = min(available, int(raw))
    return available


def check_request(config: BenchConfig, manifest: dict[str, Any], points: list[dict[str, Any]]) -> None:
    """Refuse, with one line, what cannot be measured: before any run row, process or probe."""
    if not 1 <= config.rounds <= MAX_ROUNDS:
        raise SkillDirError(f"rounds must be between 1 and {MAX_ROUNDS}; got {config.rounds}")
    for batch in config.batches + config.generate_batches:
        if not 1 <= batch <= MAX_BATCH:
            raise SkillDirError(f"batch must be between 1 and {MAX_BATCH}; got {batch}")
    seq_dim = manifest["dims"].get("seq") or {}
    low, high = seq_dim.get("min", 1), seq_dim.get("max")
    for point in points:
        seq = point_seq(manifest, point)
        longest = seq + (point["new_tokens"] if point["scenario"] == "generate" else 0)
        if seq_dim and seq < low:
            raise SkillDirError(f"seq must be at least {low} for this model; got {seq}")
        if seq_dim and high and longest > high:
            if point["scenario"] == "forward":
                what, fix = f"seq {seq}", f"ask for at most {high}"
            else:
                what = f"a prompt of {seq} tokens plus {point['new_tokens']} new tokens"
                room = high - point["new_tokens"]
                fix = f"ask for a prompt of at most {room} tokens" if room >= 1 else "ask for fewer new tokens"
            raise SkillDirError(
                f"{what} is past this model's maximum of {high} positions ({manifest['model']['ref']}); {fix}"
            )
    available = memory_available()
    for point in points:
        need = estimated_bytes(manifest, point["batch"], point_seq(manifest, point))
        if need is not None and need > available:
            raise SkillDirError(
                f"batch {point['batch']} x seq {point_seq(manifest, point)} needs about {need / 2**30:.1f} GiB "
                f"(weights + one layer's fp32 activations), more than the {available / 2**30:.1f} GiB "
                "available here: ask for a smaller batch"
            )
