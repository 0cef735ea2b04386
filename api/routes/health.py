"""`GET /api/health`: the API, Prefect and the results store, each reported.

Served without a key (liveness: `accel up` and load balancers probe it before they hold one), and then it
says only whether the API is up or degraded; addresses and the results file's path go to callers with a
valid key (OWASP API8: nothing about the deployment for anonymous callers).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from accel import __version__
from accel.api.auth import optional_principal
from accel.api.deps import PrefectDep, StoreDep

router = APIRouter(prefix="/api", tags=["health"])


class ComponentHealth(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]  # degraded: the API answers but cannot start or follow runs
    version: str
    api: ComponentHealth
    prefect: ComponentHealth | None = Field(None, description="With a valid key only")
    results_store: ComponentHealth | None = Field(None, description="With a valid key only")
    results_file: str | None = Field(None, description="The DuckDB file this API writes (and holds open); with a key")


@router.get("/health")
async def health(request: Request, prefect: PrefectDep, store: StoreDep) -> HealthResponse:
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
    status = "ok" if prefect_ok and store_health.status == "ok" else "degraded"
    api = ComponentHealth(status="ok", detail="up")
    if optional_principal(request) is None:
        return HealthResponse(status=status, version=__version__, api=api)
    return HealthResponse(
        status=status,
        version=__version__,
        api=api,
        prefect=prefect_health,
        results_store=store_health,
        results_file=str(store.path),
    )
