"""`HttpResultsStore`: the results store behind the accel API (`ACCEL_RESULTS=http://host:port`).

Writes are the DuckDB store's methods, each sent as one `RecordBatch` to `POST {url}/api/results/ingest`.
A send that does not arrive (connection refused, timeout, 429, 5xx) waits in the local outbox and the
write returns; every later write (and read) first replays the outbox in order, so rows land in the order
they were written. Replays never duplicate: the store upserts, and closing a run again is harmless. A 4xx
is the API refusing the records: raised to the caller, never queued (a queued batch refused on replay is
moved to the outbox's rejected file, with the reason). Reads ask `GET {url}/api/results/runs[/{id}]`; an API
that does not answer raises `unavailable` (the caller passes its service-unavailable error class).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from accel.storage.batch import IngestResult, RecordBatch, RunFamily, RunFinish
from accel.storage.outbox import Outbox
from accel.storage.records import (
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    RunRecord,
    RunStatus,
    SkillRecord,
    utcnow,
)

log = logging.getLogger("accel.results")

INGEST_PATH = "/api/results/ingest"
RUNS_PATH = "/api/results/runs"
RUN_PATH = RUNS_PATH + "/{run_id}"
# The batch itself is refused (invalid rows, too large): set aside, the rest of the outbox goes on.
_BATCH_REFUSED = (400, 413, 422)
# Worth trying again later, like a connection that did not open.
_TRY_LATER = (408, 425, 429)


class ResultsUnavailableError(RuntimeError):
    """The accel API does not answer (the default error of reads; callers pass their own)."""


class ResultsRefusedError(RuntimeError):
    """The accel API answered 4xx: it refused the records or the request (a bad key, an old API, bad rows)."""

    def __init__(self, url: str, status: int, detail: str):
        super().__init__(f"the accel API at {url} refused the results (HTTP {status}): {detail}")
        self.status, self.detail = status, detail


class _NotSent(Exception):
    """A send that did not arrive and may be tried again later."""


class FlushReport(BaseModel):
    """What one replay of the outbox did."""

    url: str
    outbox: str
    sent_batches: int = 0
    sent_records: int = 0
    waiting_batches: int = 0
    waiting_records: int = 0
    rejected_batches: int = 0  # refused by the API on this replay (moved to `rejected_file`)
    rejected_total: int = 0  # everything ever set aside in `rejected_file`
    rejected_file: str | None = None
    reason: str | None = None  # why batches are still waiting, or why some were refused


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:2000]
    return str(body)[:2000]


class HttpResultsStore:
    """The results store as the accel API serves it; same record models and write methods as `ResultsStore`."""

    def __init__(
        self,
        url: str,
        outbox: str | Path,
        api_key: str | None = None,
        timeout_s: float = 75.0,
        unavailable: type[Exception] = ResultsUnavailableError,
    ):
        self.url = url.rstrip("/")
        self.outbox = Outbox(outbox)
        self.unavailable = unavailable
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The read timeout outlasts the API's own wait for the DuckDB lock (it answers 503 after that).
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0))

    def __repr__(self) -> str:
        return f"HttpResultsStore({self.url!r}, outbox={str(self.outbox.path)!r})"

    def close(self) -> None:
        self._client.close()

    def __del__(self) -> None:  # stores are opened per use (flows.runs.store()): their sockets go with them
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> HttpResultsStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # sending ------------------------------------------------------------------------------------

    def _send(self, batch: RecordBatch) -> IngestResult:
        try:
            response = self._client.post(INGEST_PATH, content=batch.model_dump_json(), headers=_JSON)
        except httpx.HTTPError as err:  # refused, reset, timed out, unreachable host
            raise _NotSent(f"{type(err).__name__}: {err}") from err
        if response.status_code >= 500 or response.status_code in _TRY_LATER:
            raise _NotSent(f"HTTP {response.status_code}: {_detail(response)}")
        if response.status_code >= 400:
            raise ResultsRefusedError(self.url, response.status_code, _detail(response))
        return IngestResult.model_validate(response.json())

    def _replay_locked(self) -> FlushReport:
        """Send what waits in the outbox, oldest first, until one does not arrive (the lock is held)."""
        report = FlushReport(url=self.url, outbox=str(self.outbox.path))
        lines = self.outbox.lines_locked()
        remaining: list[str] = []
        for index, line in enumerate(lines):
            try:
                batch = RecordBatch.model_validate_json(line)
            except ValidationError as err:  # a line cut short by a crash, or from an incompatible version
                self.outbox.reject_locked(line, None, f"unreadable batch: {err}")
                report.rejected_batches += 1
                report.reason = f"an unreadable batch was set aside in {self.outbox.rejected_path}"
                log.error("results outbox: %s", report.reason)
                continue
            try:
                self._send(batch)
            except _NotSent as err:
                remaining = lines[index:]
                report.reason = str(err)
                break
            except ResultsRefusedError as err:
                if err.status not in _BATCH_REFUSED:  # a wrong key, an API without ingest: nothing will pass
                    self.outbox.rewrite_locked(lines[index:])
                    raise
                self.outbox.reject_locked(line, err.status, err.detail)
                report.rejected_batches += 1
                report.reason = f"{err} (batch {batch.batch_id} set aside in {self.outbox.rejected_path})"
                log.error("results outbox: %s", report.reason)
                continue
            report.sent_batches += 1
            report.sent_records += batch.size()
        if lines:
            self.outbox.rewrite_locked(remaining)
        report.waiting_batches = len(remaining)
        for line in remaining:
            with contextlib.suppress(ValidationError):
                report.waiting_records += RecordBatch.model_validate_json(line).size()
        report.rejected_total = self.outbox.rejected()
        report.rejected_file = str(self.outbox.rejected_path) if report.rejected_total else None
        return report

    def flush(self) -> FlushReport:
        """Replay the outbox now; what was sent, what still waits, and why."""
        with self.outbox.locked():
            return self._replay_locked()

    def apply(self, batch: RecordBatch) -> IngestResult | None:
        """Send `batch` after whatever waits in the outbox; queue it if the API does not take it now.

        The API's answer, or None when the batch was queued (a warning says so).
        """
        with self.outbox.locked():
            replayed = self._replay_locked()
            if replayed.waiting_batches:
                reason = replayed.reason
            else:
                try:
                    return self._send(batch)
                except _NotSent as err:
                    reason = str(err)
            self.outbox.append_locked(batch)
        log.warning(
            "the accel API at %s did not take %d result record(s) (%s): queued in %s; they are sent with the "
            "next write, or by `accel results flush`",
            self.url,
            batch.size(),
            reason,
            self.outbox.path,
        )
        return None

    # writes: the methods of ResultsStore ---------------------------------------------------------

    def record_environment(self, environment: EnvironmentRecord) -> str:
        self.apply(RecordBatch(environments=[environment]))
        return environment.environment_id

    def record_run(self, run: RunRecord) -> None:
        self.apply(RecordBatch(runs=[run]))

    def finish_run(
        self, run_id: str, status: RunStatus, message: str | None = None, finished_at: datetime | None = None
    ) -> None:
        # The time is taken now, not when the API applies it: a replay an hour later keeps the real end.
        done = RunFinish(run_id=run_id, status=status, message=message, finished_at=finished_at or utcnow())
        self.apply(RecordBatch(finished=[done]))

    def record_skill(self, skill: SkillRecord) -> None:
        self.apply(RecordBatch(skills=[skill]))

    def record_checks(self, checks: Sequence[CheckRecord]) -> None:
        if checks:
            self.apply(RecordBatch(checks=list(checks)))

    def record_measurements(self, measurements: Sequence[MeasurementRecord]) -> None:
        if measurements:
            self.apply(RecordBatch(measurements=list(measurements)))

    # reads --------------------------------------------------------------------------------------

    def _unreachable(self, reason: str) -> Exception:
        return self.unavailable(
            f"the accel API at {self.url} does not answer ({reason}); results are read from it "
            f"(ACCEL_RESULTS={self.url}): start it (`accel up`) or point ACCEL_RESULTS at the DuckDB file"
        )

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any | None:
        """The JSON the API answers for `path`, None for a 404; what waits in the outbox is sent first."""
        try:
            with self.outbox.locked():  # read what this machine wrote: what waits goes first
                self._replay_locked()
            response = self._client.get(path, params=params)
        except httpx.HTTPError as err:
            raise self._unreachable(f"{type(err).__name__}: {err}") from err
        if response.status_code == 404:
            return None
        if response.status_code >= 500 or response.status_code in _TRY_LATER:
            raise self._unreachable(f"HTTP {response.status_code}: {_detail(response)}")
        if response.status_code >= 400:
            raise ResultsRefusedError(self.url, response.status_code, _detail(response))
        return response.json()

    def run_family(self, run_id: str) -> RunFamily | None:
        """The run, the runs it started and their skills, checks and measurements; None if there is no such run."""
        found = self._get(RUN_PATH.format(run_id=quote(run_id, safe="")))
        return RunFamily.model_validate(found) if found is not None else None

    def list_runs(self, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Run rows, newest first, as `ResultsStore.list_runs`."""
        params = {k: v for k, v in {"kind": kind, "status": status, "limit": limit}.items() if v is not None}
        return [RunRecord.model_validate(r) for r in self._get(RUNS_PATH, params) or []]

    def get_run(self, run_id: str) -> RunRecord | None:
        family = self.run_family(run_id)
        return family.run if family else None

    def descendants(self, run_id: str) -> list[RunRecord]:
        family = self.run_family(run_id)
        return family.descendants if family else []

    def checks(self, run_id: str) -> list[CheckRecord]:
        family = self.run_family(run_id)
        return [c for c in family.checks if c.run_id == run_id] if family else []

    def measurements(self, run_id: str) -> list[MeasurementRecord]:
        family = self.run_family(run_id)
        return [m for m in family.measurements if m.run_id == run_id] if family else []

    def run_measurements(self, run_id: str) -> list[dict[str, Any]]:
        """As `storage.run_measurements` on the file: the measurements of a run and of the runs it started,
        each with its skill's model ref and target."""
        family = self.run_family(run_id)
        if family is None:
            return []
        skills = {s.skill_id: s for s in family.skills}
        columns = [
            "scenario",
            "batch",
            "seq",
            "status",
            "samples_ms",
            "p50_ms",
            "tokens_per_s",
            "samples_per_s",
            "noisy",
            "noise_reason",
            "round_p50_ms",
            "rounds",
            "error",
        ]
        return [
            {"model_ref": skills[m.skill_id].model_ref, "target": skills[m.skill_id].target}
            | {c: getattr(m, c) for c in columns}
            for m in family.measurements
            if m.skill_id in skills
        ]

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError(
            f"SQL reads need the DuckDB file, and ACCEL_RESULTS={self.url} sends results to the accel API, "
            "which serves runs by id (GET /api/results/runs/{id}): run this where the file is (the API's host)"
        )


_JSON = {"Content-Type": "application/json"}
