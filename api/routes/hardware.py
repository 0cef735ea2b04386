"""`GET /api/hardware` (pools, their workers live from Prefect, what each machine runs) and `GET /api/targets`."""

from __future__ import annotations

from fastapi import APIRouter

from accel.api.catalogue import HardwareResponse, TargetsResponse, hardware_report, targets_report
from accel.api.deps import PrefectDep, StoreDep

router = APIRouter(prefix="/api", tags=["hardware"])


@router.get("/hardware")
async def hardware(prefect: PrefectDep, store: StoreDep) -> HardwareResponse:
    return await hardware_report(prefect, store)


@router.get("/targets")
async def targets(prefect: PrefectDep, store: StoreDep) -> TargetsResponse:
    return await targets_report(prefect, store)
