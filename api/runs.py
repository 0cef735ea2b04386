"""Runs as the components report them: start one through its deployment, read its status and progress.

The run's id is its Prefect flow-run id. State comes from Prefect (the source of truth for where a run
is), progress from its `accel.stage.progress` events and those of the runs it started; the rows it
recorded come from the results store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Header

from accel.api.auth import Principal
from accel.api.prefect import PrefectClient
from accel.api.schemas.operations import ChainOutcome, ChildRun, OperationResponse, RunStatusResponse, StartedBy
from accel.api.schemas.runs import FlowRun, seed_status
from accel.flows.results import chain_result
from accel.hardware.targets import Target
from accel.storage import ResultsStore
from accel.storage.keys import KeyStore
from accel.tasks.errors import PermissionDeniedError, RunNotFoundError

WAITING = ("SCHEDULED", "PENDING")
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200, description="A retried POST with this key returns the same run"),
]
CHAIN_STAGES = ("generate", "test", "benchmark")
KEY_TAG = "accel-key:"  # the flow-run tag naming the key that started a run (its id, never its secret)


def key_tag(principal: Principal) -> str:
    return f"{KEY_TAG}{principal.key_id}"


def started_by(tags: list[str], keys: KeyStore | None) -> StartedBy | None:
    """The key that started a run, from its tag; its name from the key store (it may have been revoked since)."""
    key_id = next((t.removeprefix(KEY_TAG) for t in tags if t.startswith(KEY_TAG)), None)
    if key_id is None:
        return None
    record = keys.get(key_id) if keys is not None else None
    return StartedBy(key_id=key_id, name=record.name if record else None)


def ensure_may_control(principal: Principal, run: FlowRun) -> None:
    """Only an admin, or the key that started the run, may cancel it (OWASP API1: object-level authorization)."""
    if "admin" in principal.scopes:
        return
    if key_tag(principal) in run.tags:
        return
    raise PermissionDeniedError(
        f"run {run.id} was not started by key {principal.key_id}: a run key cancels only the runs it started"
    )


def stage_deployment(flow: str, target: str) -> str:
    """The deployment of one stage (or chain) on the work pool of `target`'s hardware: `test/cuda`."""
    return f"{flow}/{Target.parse(target).hardware}"


async def start_run(
    prefect: PrefectClient,
    deployment: str,
    parameters: dict[str, Any],
    kind: str,
    principal: Principal,
    idempotency_key: str | None = None,
) -> OperationResponse:
    """Create a flow run of `deployment` (returns at once; a worker of its pool picks it up), tagged with the
    key that started it."""
    if idempotency_key:  # one key's retry is not another key's run
        idempotency_key = f"{principal.key_id}:{idempotency_key}"
    tags = ["accel", "api", key_tag(principal)]
    run = await prefect.create_run(
        deployment, {**parameters, "trigger": "api"}, idempotency_key=idempotency_key, tags=tags
    )
    waiting = await waiting_for(prefect, run)
    return OperationResponse(
        operation_id=run.id,
        kind=kind,
        status=seed_status(run.state_type),
        state=run.state_type,
        message=waiting or f"{kind} run {run.name} is {(run.state_name or 'scheduled').lower()}",
        started_at=run.created or datetime.now(UTC),
        run_url=run.run_url,
        started_by=StartedBy(key_id=principal.key_id, name=principal.name),
    )


async def waiting_for(prefect: PrefectClient, run: FlowRun) -> str | None:
    """Why a run that has not started is waiting ("waiting for a worker on accel-cuda"), None once it runs."""
    if run.state_type not in WAITING:
        return None
    if run.state_name == "AwaitingConcurrencySlot":
        return "waiting for a slot: its deployment runs a few at once (concurrency_limit in prefect.yaml)"
    pool = run.work_pool_name
    if pool is None:
        return "waiting to start"
    found = await prefect.work_pool(pool)
    online = [w for w in (found.workers if found else []) if str(w.status).upper() == "ONLINE"]
    if not online:
        return f"waiting for a worker on {pool} (none is online: start one with `accel worker --hardware ...`)"
    return f"waiting for a worker on {pool} to pick it up ({len(online)} online)"


def _progress(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest progress payload of each run id."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        payload = event.get("payload") or {}
        if payload.get("run_id"):
            latest[payload["run_id"]] = payload
    return latest


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return max(0.0, ((end or datetime.now(UTC)) - start).total_seconds())


async def run_status(
    prefect: PrefectClient,
    run_id: str,
    kinds: tuple[str, ...] | None = None,
    keys: KeyStore | None = None,
    run: FlowRun | None = None,
) -> RunStatusResponse:
    """The status of run `run_id`; RunNotFoundError when there is none (or it is not one of `kinds`)."""
    run = run or await prefect.read_run(run_id)
    if kinds is not None and run.flow_name not in kinds:
        raise RunNotFoundError(
            f"run {run_id} is a {run.flow_name} run, not a {' or '.join(kinds)} run: see /api/workflows/{run_id}"
        )
    children = await prefect.descendants(run_id)
    latest = _progress(await prefect.progress_events([run.id, *(c.id for c in children)]))
    own = latest.get(run.id)
    child_rows = [
        ChildRun(
            run_id=c.id,
            name=c.name,
            kind=c.flow_name,
            state=c.state_type,
            status=seed_status(c.state_type),
            stage=(latest.get(c.id) or {}).get("stage"),
            progress=_run_progress(c.flow_name, latest.get(c.id)),
            message=c.state_message,
            run_url=c.run_url,
        )
        for c in children
    ]
    status = seed_status(run.state_type)
    progress = _overall_progress(status, own, child_rows)
    current = own or next((latest[c.id] for c in reversed(children) if c.id in latest), None)
    elapsed = _seconds(run.start_time, run.end_time)
    remaining = None
    if status == "running" and elapsed is not None and progress and 0 < progress < 1:
        remaining = elapsed * (1 - progress) / progress
    return RunStatusResponse(
        run_id=run.id,
        kind=run.flow_name,
        name=run.name,
        status=status,
        state=run.state_type,
        state_name=run.state_name,
        message=run.state_message,
        progress=progress,
        current_step=f"{current['stage']}: {current.get('step', '')}".strip(": ") if current else None,
        elapsed_time=elapsed,
        estimated_remaining_time=remaining,
        waiting_for=await waiting_for(prefect, run),
        created=run.created,
        started_at=run.start_time,
        finished_at=run.end_time,
        run_url=run.run_url,
        children=child_rows,
        started_by=started_by(run.tags, keys),
    )


def brief_status(run: FlowRun, keys: KeyStore | None = None) -> RunStatusResponse:
    """A run's status from its Prefect record alone (for lists: no progress, no children)."""
    return RunStatusResponse(
        run_id=run.id,
        kind=run.flow_name,
        name=run.name,
        status=seed_status(run.state_type),
        state=run.state_type,
        state_name=run.state_name,
        message=run.state_message,
        progress=1.0 if run.state_type == "COMPLETED" else None,
        elapsed_time=_seconds(run.start_time, run.end_time),
        created=run.created,
        started_at=run.start_time,
        finished_at=run.end_time,
        run_url=run.run_url,
        started_by=started_by(run.tags, keys),
    )


def _overall_progress(status: str, own: dict[str, Any] | None, children: list[ChildRun]) -> float | None:
    """1 for a completed run; for a run of runs, the mean of its children's; else its own last figure."""
    if status == "completed":
        return 1.0
    if children:
        done = [1.0 if c.status == "completed" else (c.progress or 0.0) for c in children]
        return round(sum(done) / len(done), 4)
    return _run_progress(None, own)


def _run_progress(kind: str | None, payload: dict[str, Any] | None) -> float | None:
    """A chain's progress over its three stages (each a third); a stage run's own figure."""
    if payload is None:
        return None
    progress = float(payload.get("progress") or 0.0)
    if kind == "chain" and payload.get("stage") in CHAIN_STAGES:
        return round((CHAIN_STAGES.index(payload["stage"]) + progress) / len(CHAIN_STAGES), 4)
    return progress


def chain_results(store: ResultsStore, run_id: str) -> list[ChainOutcome]:
    """The outcome of every chain the run started (a nightly's through its pipeline), from the store's rows."""
    chains = store.query(
        """
        WITH RECURSIVE family(run_id) AS (
            SELECT ?::VARCHAR UNION SELECT r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id
        )
        SELECT run_id FROM runs WHERE kind = 'chain' AND run_id IN (SELECT run_id FROM family) ORDER BY started_at
        """,
        [run_id],
    )
    return [ChainOutcome.model_validate(chain_result(store, row["run_id"]).model_dump()) for row in chains]
