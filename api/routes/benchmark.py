"""The benchmark component: `POST /api/benchmark/run` measures one model on one target."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel

from accel.api.catalogue import HardwareResponse, ModelsResponse, check_model_refs, hardware_report, models_report
from accel.api.deps import KeysDep, PrefectDep, PrincipalDep, SettingsDep, StoreDep
from accel.api.runs import IdempotencyKey, run_status, stage_deployment, start_run
from accel.api.schemas.operations import BenchmarkRunRequest, OperationResponse, RunStatusResponse
from accel.storage import MeasurementRecord
from accel.tasks.benchmark import BenchConfig
from accel.tasks.errors import RunNotFoundError, ShapeError

router = APIRouter(prefix="/api/benchmark", tags=["benchmark"])
KIND = ("benchmark",)


class BenchmarkResults(BaseModel):
    """Every point the run measured so far; each figure carries its noisy flag and reason."""

    run_id: str
    status: str
    message: str | None
    measured: int
    failed: int
    noisy: int
    measurements: list[MeasurementRecord]


def bench_params(bench: dict) -> dict:
    """The flows' `bench` parameter, validated here so a bad shape is a 422 now, not a failed run later."""
    try:
        return BenchConfig.model_validate(bench).model_dump(exclude_unset=True)
    except ValueError as err:
        raise ShapeError(f"benchmark settings refused: {err}") from None


@router.post("/run", status_code=202)
async def run_benchmark(
    request: BenchmarkRunRequest,
    prefect: PrefectDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationResponse:
    """Benchmark one model on one target (its skill is generated first, or reused)."""
    check_model_refs([request.model], settings)
    params = {"model": request.model, "target": request.target, "bench": bench_params(request.bench())}
    deployment = stage_deployment("benchmark", request.target)
    return await start_run(prefect, deployment, params, "benchmark", principal, idempotency_key)


@router.get("/status/{run_id}")
async def benchmark_status(run_id: str, prefect: PrefectDep, keys: KeysDep) -> RunStatusResponse:
    return await run_status(prefect, run_id, KIND, keys)


@router.get("/results/{run_id}")
async def benchmark_results(run_id: str, store: StoreDep) -> BenchmarkResults:
    run = store.get_run(run_id)
    if run is None or run.kind not in ("benchmark", "chain"):
        raise RunNotFoundError(f"no benchmark run {run_id} in the results store (it may not have started yet)")
    rows = store.measurements(run_id=run_id)
    return BenchmarkResults(
        run_id=run_id,
        status=run.status,
        message=run.message,
        measured=sum(m.status == "ok" for m in rows),
        failed=sum(m.status not in ("ok", "skipped") for m in rows),
        noisy=sum(bool(m.noisy) for m in rows),
        measurements=rows,
    )


@router.get("/models")
async def benchmark_models(store: StoreDep, settings: SettingsDep) -> ModelsResponse:
    return await models_report(store, settings)


@router.get("/hardware")
async def benchmark_hardware(prefect: PrefectDep, store: StoreDep) -> HardwareResponse:
    return await hardware_report(prefect, store)


@router.websocket("/ws/{run_id}")
async def benchmark_socket(websocket: WebSocket, run_id: str) -> None:
    await websocket.app.state.relay.serve_socket(websocket, run_id)
