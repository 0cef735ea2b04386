"""What a chain and a pipeline answer: plain pydantic models, importable without Prefect or the ML stack
(the API reads and returns them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from accel.storage import MeasurementRecord, RunFamily


class ChainResult(BaseModel):
    model: str
    target: str
    run_id: str
    status: Literal["passed", "failed", "running"]  # running: read from the store before the chain ended
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
    # the generate scenario's headline (its first ok point): time to first token, time per output token
    generate_batch: int | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    generate_tokens_per_s: float | None = None
    generate_noisy: bool = False

    def add_measurements(self, measured: list[MeasurementRecord]) -> None:
        """Count the benchmark's points and take the headline: the first ok forward point (else the first ok),
        with its noisy flag and reason and why its MFU is withheld; and the first ok generate point's TTFT,
        TPOT and tokens/s."""
        ok = [m for m in measured if m.status == "ok"]
        self.measurements_ok, self.measurements_total = len(ok), len(measured)
        headline = next((m for m in ok if m.scenario == "forward"), ok[0] if ok else None)
        if headline is not None:
            self.p50_ms, self.tokens_per_s, self.mfu = headline.p50_ms, headline.tokens_per_s, headline.mfu
            self.batch, self.seq = headline.batch, headline.seq
            self.noisy, self.noise_reason = bool(headline.noisy), headline.noise_reason
            self.mfu_withheld = headline.details.get("mfu_withheld")
        self.noisy_points = sum(bool(m.noisy) for m in ok)
        generated = next((m for m in ok if m.scenario == "generate"), None)
        if generated is not None:
            self.generate_batch, self.generate_tokens_per_s = generated.batch, generated.tokens_per_s
            self.ttft_ms, self.tpot_ms = generated.prefill_ms, generated.decode_ms_per_token
            self.generate_noisy = bool(generated.noisy)


class PipelineResult(BaseModel):
    run_id: str
    status: Literal["passed", "failed"]
    results: list[ChainResult]


class _RunFamilyReader(Protocol):
    def run_family(self, run_id: str) -> RunFamily | None: ...


def chain_result(store: _RunFamilyReader, run_id: str) -> ChainResult:
    """A chain's outcome, read back from its rows in the results store (the file, or the accel API's).

    What `chain` itself answers, from what it recorded: model and target from the run's params; passed
    only when the run completed; the stage from the rows there are (no checks: generation; a check that
    did not pass: the test; else the benchmark, `done` once completed); the headline forward point.
    KeyError when the store has no row of that run (the chain never started).
    """
    family = store.run_family(run_id)
    if family is None:
        raise KeyError(f"no run {run_id!r} in the results store")
    run = family.run
    checks = [c for c in family.checks if c.run_id == run_id]
    measured = [m for m in family.measurements if m.run_id == run_id]
    skill_id = next((r.skill_id for r in [*checks, *measured]), None)
    skill = next((s for s in family.skills if s.skill_id == skill_id), None)
    result = ChainResult(
        model=str(run.params.get("model", "")),
        target=str(run.params.get("target", "")),
        run_id=run_id,
        status=_STATUS.get(run.status, "failed"),
        stage="generate",
        message=run.message or "",
        skill_id=skill_id,
        skill_path=skill.path if skill else None,
    )
    if not checks:
        if not result.message:
            result.message = _unfinished(run.status, result.status)
        return result
    result.checks_total = len(checks)
    result.checks_passed = sum(c.status == "passed" for c in checks)
    tests_passed = all(c.status not in ("failed", "error") for c in checks) and not (
        result.status == "failed" and result.message.startswith("tests failed")  # the test's own verdict
    )
    result.stage = "benchmark" if tests_passed else "test"
    if tests_passed:  # a failed test records its skipped points, which the chain does not count
        result.add_measurements(measured)
    if result.status == "passed":
        result.stage = "done"
        result.message = (
            f"{result.checks_passed}/{result.checks_total} checks passed, {result.measurements_ok} points measured"
        )
    elif not result.message:
        result.message = _unfinished(run.status, result.status)
    return result


_STATUS = {"completed": "passed", "initializing": "running", "running": "running"}


def _unfinished(run_status: str, status: str) -> str:
    if status == "running":
        return "still running: these are the rows recorded so far"
    return f"the chain ended {run_status}"
