"""`GET /api/health`: the API, Prefect and the results store, each reported."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from accel import __version__
from accel.api.deps import PrefectDep, StoreDep

router = APIRouter(prefix="/api", tags=["health"])


class ComponentHealth(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]  # degraded: the API answers but cannot start or follow runs
    version: str
    api: ComponentHealth
    prefect: ComponentHealth
    results_store: ComponentHealth
    results_file: str = Field(description="The DuckDB file this API writes (and holds open)")


@router.get("/health")
async def health(prefect: PrefectDep, store: StoreDep) -> HealthResponse:
    """Whether the API is up, and whether it reaches Prefect and the results store."""
    prefect_ok = await prefect.health()
    try:
        runs = store.count("runs")
        store_health = ComponentHealth(status="ok", detail=f"{store.path} ({runs} runs)")
    except Exception as err:  # busy past its timeout, unreadable: reported, never raised
        store_health = ComponentHealth(status="unavailable", detail=f"{store.path}: {type(err).__name__}: {err}")
    prefect_health = ComponentHealth(
        status="ok" if prefect_ok else "unavailable",
        detail=prefect.api_url if prefect_ok else f"{prefect.api_url} does not answer",
    )
    return HealthResponse(
        status="ok" if prefect_ok and store_health.status == "ok" else "degraded",
        version=__version__,
        api=ComponentHealth(status="ok", detail="up"),
        prefect=prefect_health,
        results_store=store_health,
        results_file=str(store.path),
    )
