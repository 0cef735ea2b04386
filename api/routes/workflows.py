"""Cross-component workflows: the pipeline (models x targets, generate -> test -> benchmark) and the nightly.

`GET /api/workflows/{run_id}` answers for a run of any kind (its status, children and rows), so a
client can follow whatever it started through one path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket

from accel.api.catalogue import check_model_refs
from accel.api.deps import KeysDep, PrefectDep, PrincipalDep, SettingsDep, StoreDep
from accel.api.routes.benchmark import bench_params
from accel.api.runs import IdempotencyKey, brief_status, chain_results, ensure_may_control, run_status, start_run
from accel.api.schemas.operations import (
    NightlyRequest,
    OperationResponse,
    PipelineRequest,
    RunList,
    WorkflowResponse,
)

router = APIRouter(prefix="/api/workflows", tags=["workflows"])
KINDS = ["pipeline", "nightly"]


@router.post("/pipeline", status_code=202)
async def run_pipeline(
    request: PipelineRequest,
    prefect: PrefectDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationResponse:
    """Generate, test and benchmark every model on every target; each target's chain runs on its hardware's pool."""
    check_model_refs(request.models, settings)
    params = {
        "models": request.models,
        "targets": request.targets,
        "level": request.level,
        "bench": bench_params(request.bench()),
        "force": request.force,
    }
    return await start_run(prefect, "pipeline/pipeline", params, "pipeline", principal, idempotency_key)


@router.post("/nightly", status_code=202)
async def run_nightly(
    prefect: PrefectDep,
    principal: PrincipalDep,
    request: NightlyRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> OperationResponse:
    """Run the nightly matrix now (what the 02:00 UTC schedule runs), judged against the previous night."""
    params = {"matrix": request.matrix} if request and request.matrix else {}
    return await start_run(prefect, "nightly/nightly", params, "nightly", principal, idempotency_key)


@router.get("")
async def list_workflows(
    prefect: PrefectDep,
    keys: KeysDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    runs = await prefect.list_runs(KINDS, limit=limit, offset=offset)
    return RunList.page([brief_status(r, keys) for r in runs], limit, offset)


@router.get("/{run_id}")
async def workflow(run_id: str, prefect: PrefectDep, store: StoreDep, keys: KeysDep) -> WorkflowResponse:
    """A run of any kind: its state, its child runs with their stage and state, and its chains' rows."""
    status = await run_status(prefect, run_id, keys=keys)
    return WorkflowResponse(**status.model_dump(), results=chain_results(store, run_id))


@router.post("/{run_id}/cancel")
async def cancel_workflow(
    run_id: str, prefect: PrefectDep, store: StoreDep, keys: KeysDep, principal: PrincipalDep
) -> WorkflowResponse:
    """Cancel the run and every run it started that has not ended (Prefect does not cascade to them). An admin
    cancels any run; a run key only the runs it started (403 otherwise)."""
    ensure_may_control(principal, await prefect.read_run(run_id))
    await prefect.cancel(run_id)
    return await workflow(run_id, prefect, store, keys)


@router.websocket("/ws/{run_id}")
async def workflow_socket(websocket: WebSocket, run_id: str) -> None:
    await websocket.app.state.relay.serve_socket(websocket, run_id)
