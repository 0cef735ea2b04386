"""The results store over HTTP: what `HttpResultsStore` (workers, `ACCEL_RESULTS=http://...`) writes and reads.

`POST /api/results/ingest` applies one `RecordBatch` (rows validated by the store's own record models,
upserted on their natural keys, then runs closed; one transaction, so a replayed batch changes nothing)
and answers how many records of each kind it applied. `GET /api/results/runs/{run_id}` answers the run,
the runs it started, and their skills, checks and measurements; `GET /api/results/runs` lists run rows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from accel.api.deps import StoreDep
from accel.api.limits import MAX_INGEST_RECORDS
from accel.storage import IngestResult, RecordBatch, RunFamily, RunRecord
from accel.storage.records import RunStatus
from accel.storage.store import RecordsRejectedError
from accel.tasks.errors import PayloadTooLargeError, RequestError, RunNotFoundError

router = APIRouter(prefix="/api/results", tags=["results"])


class IngestRefusedError(RequestError):
    """A batch the store cannot apply as it stands (it closes a run that was never recorded)."""


async def strict_batch(request: Request) -> RecordBatch:
    """The body validated strictly, as JSON: `true` is no number and "1" no integer (FastAPI's own parse,
    which documents the body, is lax); a measurement that does not say exactly what it is is refused."""
    try:
        return RecordBatch.model_validate_json(await request.body(), strict=True)
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_url=False, include_context=False)) from None


@router.post("/ingest")
def ingest(body: RecordBatch, batch: Annotated[RecordBatch, Depends(strict_batch)], store: StoreDep) -> IngestResult:
    """Apply a batch of result records: idempotent upserts, then the runs it closes; all of it or nothing."""
    del body  # the lax parse FastAPI documents; `batch` is the strict one
    if batch.size() > MAX_INGEST_RECORDS:
        raise PayloadTooLargeError(
            f"batch {batch.batch_id} carries {batch.size()} records: at most {MAX_INGEST_RECORDS} per batch"
        )
    try:
        return store.apply(batch)
    except KeyError as err:
        raise IngestRefusedError(
            f"batch {batch.batch_id}: {err.args[0]}; nothing of it was written (a run is recorded before it "
            "is finished)"
        ) from None
    except RecordsRejectedError as err:
        raise IngestRefusedError(f"batch {batch.batch_id}: {err}; nothing of it was written") from None


@router.get("/runs")
def list_runs(
    store: StoreDep,
    kind: Annotated[str | None, Query(description="Only runs of this kind (chain, pipeline, nightly, ...).")] = None,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 100,
) -> list[RunRecord]:
    """Run rows, newest first (what `HttpResultsStore.list_runs` reads): the newest `limit` (1000 at most)."""
    return store.list_runs(kind=kind, status=status, limit=limit)


@router.get("/runs/{run_id}")
def run_family(run_id: str, store: StoreDep) -> RunFamily:
    """The run, every run it started, and their skills, checks and measurements."""
    family = store.run_family(run_id)
    if family is None:
        raise RunNotFoundError(f"no run {run_id!r} in the results store")
    return family
