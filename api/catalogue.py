"""What the API can offer: models that resolve here, hardware pools with their workers, targets, templates.

Pools and workers are read live from Prefect; what a machine can run comes from the hardware profile
each worker's machine recorded in the results store (`environments`), never from a static list.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from accel.api.prefect import PrefectClient
from accel.hardware.profile import HardwareProfile
from accel.hardware.targets import HARDWARE, all_targets, target_status, work_pool_name
from accel.settings import Settings
from accel.storage import ResultsStore
from accel.tasks import templates
from accel.tasks.errors import ModelRefError
from accel.tasks.model_refs import PACKAGED_MODELS, Source, _looks_like_path, _packaged_path, local_models, locate


class ModelEntry(BaseModel):
    ref: str
    source: Source | None = Field(None, description="Where it resolves here; None: only known from earlier runs")
    model_type: str | None = None
    architectures: list[str] = Field(default_factory=list)
    family: str | None = Field(None, description="How accel drives it, once a run has resolved it")
    task: str | None = None
    targets_generated: list[str] = Field(default_factory=list)


class ModelsResponse(BaseModel):
    models: list[ModelEntry]


class WorkerEntry(BaseModel):
    name: str
    status: str
    last_heartbeat: datetime | None = None


class MachineEntry(BaseModel):
    host: str
    cpu: str | None
    accelerators: list[dict[str, Any]]
    targets: list[str] = Field(description="What this machine runs, from the profile it recorded")
    recorded_at: datetime


class PoolEntry(BaseModel):
    hardware: str
    pool: str
    exists: bool
    paused: bool = False
    workers: list[WorkerEntry] = Field(default_factory=list)
    online: int = 0
    targets: list[str] = Field(description="Targets of this hardware accel supports")


class HardwareResponse(BaseModel):
    pools: list[PoolEntry]
    machines: list[MachineEntry]


class TargetEntry(BaseModel):
    target: str
    hardware: str
    runtime: str
    precision: str
    pool: str
    workers_online: int
    runs_on: list[str] = Field(description="Hosts whose recorded profile can run it")


class TargetsResponse(BaseModel):
    targets: list[TargetEntry]


class TemplateEntry(BaseModel):
    name: str
    family: str
    version: str
    tasks: list[str]
    runtimes: list[str]


class TemplatesResponse(BaseModel):
    templates: list[TemplateEntry]


def model_folders(settings: Settings) -> list[Path]:
    """The folders a model ref that is a path may point into: ACCEL_MODELS_DIR, the Hugging Face cache and
    the packaged models' folders. Nothing else of the API's machine is readable through a "model path"."""
    from huggingface_hub.constants import HF_HUB_CACHE

    folders = [Path(HF_HUB_CACHE)] + ([settings.models_dir] if settings.models_dir else [])
    folders += [found[0].parent for repo in PACKAGED_MODELS if (found := _packaged_path(repo)) is not None]
    return [f.expanduser().resolve() for f in folders]


def _confined(ref: str, settings: Settings) -> None:
    """ModelRefError for a path outside `model_folders`, checked before anything is read there (so the answer
    never says whether /etc/something exists)."""
    try:
        candidate = Path(ref).expanduser()
    except RuntimeError:  # ~someone with no such user: locate says so
        return
    if not (_looks_like_path(ref) or candidate.exists()):
        return  # a Hub id or a packaged model's name
    resolved = candidate.resolve()  # symlinks and .. followed: a link out of a folder is outside it
    if not any(resolved.is_relative_to(folder) for folder in model_folders(settings)):
        raise ModelRefError(
            f"model path {ref!r} is outside the folders this API reads models from: put it under ACCEL_MODELS_DIR"
            f" ({'set' if settings.models_dir else 'unset'}) or the Hugging Face cache, or name a Hub id"
        )


def check_model_refs(refs: list[str], settings: Settings) -> None:
    """ModelRefError (422, naming what is accepted) for a ref that resolves to nothing here, or a path outside
    the model folders (OWASP API8: no reading /etc through a "model path")."""
    for ref in refs:
        _confined(ref, settings)
        locate(ref, settings.allow_download)


async def models_report(store: ResultsStore, settings: Settings) -> ModelsResponse:
    here = await asyncio.to_thread(local_models, settings.models_dir)
    known = store.query(
        "SELECT model_ref, any_value(family) AS family, any_value(task) AS task, list(DISTINCT target ORDER BY target) "
        "AS targets FROM skills GROUP BY model_ref ORDER BY model_ref"
    )
    by_ref = {row["model_ref"]: row for row in known}
    entries = []
    for m in here:
        row = by_ref.pop(m.ref, None) or by_ref.pop(m.path, None) or {}
        entries.append(
            ModelEntry(
                ref=m.ref,
                source=m.source,
                model_type=m.model_type,
                architectures=m.architectures,
                family=row.get("family"),
                task=row.get("task"),
                targets_generated=row.get("targets") or [],
            )
        )
    entries += [
        ModelEntry(ref=ref, family=row["family"], task=row["task"], targets_generated=row["targets"] or [])
        for ref, row in by_ref.items()
    ]
    return ModelsResponse(models=entries)


def _machines(store: ResultsStore) -> list[tuple[MachineEntry, HardwareProfile | None]]:
    rows = store.query(
        "SELECT host, cpu, accelerators, profile, recorded_at FROM environments "
        "QUALIFY row_number() OVER (PARTITION BY host ORDER BY recorded_at DESC) = 1 ORDER BY host"
    )
    machines = []
    for row in rows:
        profile = None
        try:
            profile = HardwareProfile.model_validate(json.loads(row["profile"])) if row["profile"] else None
        except ValueError:  # a profile of an older shape: the machine is listed, its targets are not
            profile = None
        runnable = [str(t) for t in all_targets() if profile is not None and target_status(t, profile).available]
        machines.append(
            (
                MachineEntry(
                    host=row["host"],
                    cpu=row["cpu"],
                    accelerators=json.loads(row["accelerators"]) if row["accelerators"] else [],
                    targets=runnable,
                    recorded_at=row["recorded_at"],
                ),
                profile,
            )
        )
    return machines


async def hardware_report(prefect: PrefectClient, store: ResultsStore) -> HardwareResponse:
    pools = {p.name: p for p in await prefect.work_pools()}
    entries = []
    for hw in HARDWARE:
        name = work_pool_name(hw)
        pool = pools.get(name)
        workers = [
            WorkerEntry(name=w.name, status=str(w.status), last_heartbeat=w.last_heartbeat_time)
            for w in (pool.workers if pool else [])
        ]
        entries.append(
            PoolEntry(
                hardware=hw,
                pool=name,
                exists=pool is not None,
                paused=bool(pool and pool.is_paused),
                workers=workers,
                online=sum(w.status.upper() == "ONLINE" for w in workers),
                targets=[str(t) for t in all_targets() if t.hardware == hw],
            )
        )
    return HardwareResponse(pools=entries, machines=[m for m, _ in _machines(store)])


async def targets_report(prefect: PrefectClient, store: ResultsStore) -> TargetsResponse:
    report = await hardware_report(prefect, store)
    online = {p.hardware: p.online for p in report.pools}
    return TargetsResponse(
        targets=[
            TargetEntry(
                target=str(t),
                hardware=t.hardware,
                runtime=t.runtime,
                precision=t.precision,
                pool=work_pool_name(t.hardware),
                workers_online=online.get(t.hardware, 0),
                runs_on=[m.host for m in report.machines if str(t) in m.targets],
            )
            for t in all_targets()
        ]
    )


def templates_report() -> TemplatesResponse:
    return TemplatesResponse(
        templates=[
            TemplateEntry(
                name=i.name, family=i.family, version=i.version, tasks=list(i.tasks), runtimes=list(i.runtimes)
            )
            for i in templates.catalogue().values()
        ]
    )
