"""The test component: `POST /api/test/run` starts the `test` stage of one model on one target."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket
from pydantic import BaseModel

from accel.api.catalogue import HardwareResponse, ModelsResponse, check_model_refs, hardware_report, models_report
from accel.api.deps import KeysDep, PrefectDep, PrincipalDep, SettingsDep, StoreDep
from accel.api.runs import IdempotencyKey, brief_status, ensure_may_control, run_status, stage_deployment, start_run
from accel.api.schemas.operations import OperationResponse, RunList, RunStatusResponse, TestRunRequest
from accel.storage import CheckRecord
from accel.tasks.errors import RunNotFoundError

router = APIRouter(prefix="/api/test", tags=["test"])
KIND = ("test",)


class TestResults(BaseModel):
    run_id: str
    status: str
    message: str | None
    passed: int
    total: int
    checks: list[CheckRecord]


@router.post("/run", status_code=202)
async def run_test(
    request: TestRunRequest,
    prefect: PrefectDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationResponse:
    """Test one model on one target: generates its skill first (reused when it exists), then runs the checks."""
    check_model_refs([request.model], settings)
    deployment = stage_deployment("test", request.target)
    return await start_run(prefect, deployment, request.model_dump(), "test", principal, idempotency_key)


@router.get("/status/{run_id}")
async def test_status(run_id: str, prefect: PrefectDep, keys: KeysDep) -> RunStatusResponse:
    return await run_status(prefect, run_id, KIND, keys)


@router.get("/results/{run_id}")
async def test_results(run_id: str, store: StoreDep) -> TestResults:
    """The checks the run recorded so far (they land as the stage finishes), with the run's verdict."""
    run = store.get_run(run_id)
    if run is None or run.kind != "test":
        raise RunNotFoundError(f"no test run {run_id} in the results store (it may not have started yet)")
    checks = store.checks(run_id=run_id)
    return TestResults(
        run_id=run_id,
        status=run.status,
        message=run.message,
        passed=sum(c.status == "passed" for c in checks),
        total=len(checks),
        checks=checks,
    )


@router.get("/runs")
async def test_runs(
    prefect: PrefectDep,
    keys: KeysDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    runs = await prefect.list_runs(list(KIND), limit=limit, offset=offset)
    return RunList.page([brief_status(r, keys) for r in runs], limit, offset)


@router.post("/cancel/{run_id}")
async def cancel_test(run_id: str, prefect: PrefectDep, keys: KeysDep, principal: PrincipalDep) -> RunStatusResponse:
    """Cancel a test run: an admin any, a run key only the runs it started (403 otherwise)."""
    run = await prefect.read_run(run_id)
    await run_status(prefect, run_id, KIND, run=run)  # 404 for a run that is not a test run
    ensure_may_control(principal, run)
    await prefect.cancel(run_id)
    return await run_status(prefect, run_id, KIND, keys)


@router.get("/models")
async def test_models(store: StoreDep, settings: SettingsDep) -> ModelsResponse:
    """The models that resolve here (packaged, the Hugging Face cache, ACCEL_MODELS_DIR), and those run before."""
    return await models_report(store, settings)


@router.get("/hardware")
async def test_hardware(prefect: PrefectDep, store: StoreDep) -> HardwareResponse:
    return await hardware_report(prefect, store)


@router.websocket("/ws/{run_id}")
async def test_socket(websocket: WebSocket, run_id: str) -> None:
    await websocket.app.state.relay.serve_socket(websocket, run_id)
