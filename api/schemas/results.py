"""What `GET /api/results/...` answers: aggregates of the results store, each figure with its noisy flag.

Only public fields: run ids, model refs, targets, figures; never a local path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Metric = Literal[
    "p50_ms",
    "tokens_per_s",
    "samples_per_s",
    "mfu",
    "peak_rss_bytes",
    "prefill_ms",
    "decode_ms_per_token",
    "bandwidth_utilization",
]
ExportFormat = Literal["csv", "parquet", "json"]
Verdict = Literal["improved", "regressed", "unchanged", "inconclusive"]
HistoryVerdict = Literal["first", "improved", "regressed", "unchanged", "inconclusive"]


class _Page(BaseModel):
    total: int = Field(description="Rows on all pages.")
    limit: int = Field(description="Rows per page (at most storage.queries.MAX_LIMIT).")
    offset: int
    next_offset: int | None = Field(None, description="`offset` of the next page; None on the last page.")

    @model_validator(mode="after")
    def _next(self) -> _Page:
        if self.next_offset is None and self.offset + self.limit < self.total:
            self.next_offset = self.offset + self.limit
        return self


class SummaryRow(BaseModel):
    """One model x target: the headline point of its latest benchmark, its latest test, its last run."""

    model_ref: str
    target: str
    hardware: str
    runtime: str
    precision: str
    headline_run_id: str | None = Field(
        None, description="The run of the headline point: the latest ok forward measurement (at batch, seq)."
    )
    measured_at: datetime | None = None
    batch: int | None = None
    seq: int | None = None
    p50_ms: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    mfu: float | None = None
    noisy: bool | None = Field(None, description="The headline figure cannot be trusted (None: no figure).")
    noise_reason: str | None = None
    test_run_id: str | None = Field(None, description="The latest run that recorded checks of this model x target.")
    checks_passed: int | None = None
    checks_total: int | None = None
    last_run_id: str
    last_run_at: datetime
    status: str | None = Field(None, description="The last run's status (None when the run itself was not recorded).")


class SummaryPage(_Page):
    rows: list[SummaryRow]


class ComparePoint(BaseModel):
    target: str
    scenario: str
    batch: int
    seq: int
    baseline_p50_ms: float
    p50_ms: float
    speedup: float = Field(description="baseline p50 / target p50: above 1, the target is faster.")
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    prefill_ms: float | None = Field(None, description="generate: the time to first token.")
    decode_ms_per_token: float | None = Field(None, description="generate: the time per output token.")
    bandwidth_utilization: float | None = Field(None, description="generate: the decode's share of memory bandwidth.")
    run_id: str
    baseline_run_id: str
    measured_at: datetime
    baseline_measured_at: datetime
    noisy: bool = Field(description="Either side is flagged noisy.")
    noise_reason: str | None = None


class CompareResponse(BaseModel):
    model: str
    baseline: str
    points: list[ComparePoint]


class HistoryPoint(BaseModel):
    run_id: str
    skill_id: str
    recorded_at: datetime
    scenario: str
    batch: int
    seq: int
    value: float
    noisy: bool
    noise_reason: str | None = None
    previous: float | None = Field(None, description="The previous non-noisy value of this scenario and shape.")
    previous_run_id: str | None = None
    ratio: float | None = Field(None, description="value / previous.")
    verdict: HistoryVerdict
    regressed: bool


class HistoryResponse(_Page):
    model: str
    target: str
    metric: Metric
    higher_is_better: bool
    threshold: float = Field(description="The store's regression threshold (storage.stats.DEFAULT_THRESHOLD).")
    since: datetime
    points: list[HistoryPoint]


class RegressionPoint(BaseModel):
    model_ref: str
    target: str
    scenario: str
    batch: int
    seq: int
    old_p50_ms: float | None
    new_p50_ms: float | None
    old_round_p50_ms: list[float]
    new_round_p50_ms: list[float]
    noisy: bool
    noise_reason: str | None = None
    verdict: Verdict
    ratio: float | None = Field(None, description="median(new) / median(old) of the round medians.")
    reason: str


class RegressionsResponse(BaseModel):
    run: str
    baseline: str
    baseline_given: bool = Field(description="False: the baseline is the previous run of the same kind.")
    threshold: float
    counts: dict[Verdict, int]
    points: list[RegressionPoint]


class Candidate(BaseModel):
    target: str
    run_id: str
    status: str
    p50_ms: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    noisy: bool
    noise_reason: str | None = None
    measured_at: datetime
    test_run_id: str | None = None
    checks_passed: int | None = None
    checks_total: int | None = None
    rank: int | None = Field(None, description="1 is the fastest that qualifies; None: excluded.")
    excluded_reason: str | None = None


class Recommendation(BaseModel):
    model: str
    scenario: str
    batch: int
    seq: int
    best: Candidate
    runner_up: Candidate | None = None
    margin: float | None = Field(None, description="runner-up p50 / best p50.")
    ranked: list[Candidate]
    excluded: list[Candidate] = Field(description="Targets measured there that do not rank, with why.")
