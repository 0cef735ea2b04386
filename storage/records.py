"""The rows of the results store, one pydantic model per table (field names are column names)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

RunStatus = Literal["initializing", "running", "completed", "failed", "cancelled", "crashed"]
CheckStatus = Literal["passed", "failed", "skipped", "error"]
# oom: the kernel says it killed the process for memory; killed: killed by a signal for another reason
MeasurementStatus = Literal["ok", "error", "oom", "killed", "timeout", "skipped"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class EnvironmentRecord(BaseModel):
    """The machine and library versions results were produced on; identified by their content."""

    environment_id: str = ""
    host: str
    os: str | None = None
    python: str | None = None
    cpu: str | None = None
    architecture: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    memory_bytes: int | None = None
    accelerators: list[dict[str, Any]] = Field(default_factory=list)
    libraries: dict[str, str | None] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)
    recorded_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _content_id(self) -> EnvironmentRecord:
        if not self.environment_id:
            identity = self.model_dump(exclude={"environment_id", "profile", "recorded_at"}, mode="json")
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
            self.environment_id = digest[:16]
        return self


class RunRecord(BaseModel):
    run_id: str
    kind: str
    trigger: str | None = None
    status: RunStatus = "running"
    params: dict[str, Any] = Field(default_factory=dict)
    environment_id: str | None = None
    parent_run_id: str | None = None
    started_at: datetime | None = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    message: str | None = None


class SkillRecord(BaseModel):
    skill_id: str
    model_ref: str
    model_revision: str | None = None
    family: str | None = None
    task: str | None = None
    architecture: str | None = None
    target: str
    hardware: str
    runtime: str
    precision: str
    template: str | None = None
    template_version: str | None = None
    generator_version: str | None = None
    path: str | None = None
    manifest: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class CheckRecord(BaseModel):
    run_id: str
    skill_id: str
    check: str
    status: CheckStatus
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    tolerance: float | None = None
    duration_s: float | None = None
    message: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    recorded_at: datetime = Field(default_factory=utcnow)


class MeasurementRecord(BaseModel):
    run_id: str
    skill_id: str
    scenario: str
    batch: int
    seq: int
    status: MeasurementStatus
    iterations: int | None = None
    load_s: float | None = None
    first_call_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    samples_ms: list[float] = Field(default_factory=list)
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    prefill_ms: float | None = None
    decode_ms_per_token: float | None = None
    peak_rss_bytes: int | None = None
    peak_accel_bytes: int | None = None
    flops: float | None = None
    mfu: float | None = None
    error: str | None = None
    recorded_at: datetime = Field(default_factory=utcnow)
    # added by migration 2, appended to the table in this order
    cv: float | None = None
    threads: int | None = None
    warmup: int | None = None
    load_before: float | None = None
    load_after: float | None = None
    noisy: bool | None = None
    peak_flops: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    # added by migration 3
    rounds: int | None = None
    round_p50_ms: list[float] = Field(default_factory=list)
    foreign_cpu_share: float | None = None
    steal_share: float | None = None
    noise_reason: str | None = None
    peak_flops_theoretical: float | None = None
    # added by migration 4: the generate scenario (prefill_ms is the time to first token, decode_ms_per_token
    # the time per output token)
    new_tokens: int | None = None
    decode_bytes_per_step: float | None = None
    memory_bandwidth_gbs: float | None = None
    bandwidth_utilization: float | None = None
