"""What a chain and a pipeline answer: plain pydantic models, importable without Prefect or the ML stack
(the API reads and returns them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ChainResult(BaseModel):
    model: str
    target: str
    run_id: str
    status: Literal["passed", "failed"]
    stage: Literal["generate", "test", "benchmark", "done"]
    message: str
    skill_id: str | None = None
    skill_path: str | None = None
    checks_passed: int | None = None
    checks_total: int | None = None
    p50_ms: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    mfu_withheld: str | None = None  # why no MFU is shown (a contended peak probe, an impossible figure)
    noisy: bool = False  # the headline figure was measured while others used the machine, or is suspect
    noise_reason: str | None = None
    noisy_points: int = 0  # of the measured points, how many are flagged noisy
    batch: int | None = None
    seq: int | None = None
    measurements_ok: int = 0
    measurements_total: int = 0


class PipelineResult(BaseModel):
    run_id: str
    status: Literal["passed", "failed"]
    results: list[ChainResult]
