"""The generator component: `POST /api/generator/model` generates one model's skill for one target."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, WebSocket
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from accel.api.catalogue import (
    HardwareResponse,
    TemplatesResponse,
    check_model_refs,
    hardware_report,
    templates_report,
)
from accel.api.deps import KeysDep, PrefectDep, PrincipalDep, SettingsDep, StoreDep
from accel.api.runs import IdempotencyKey, run_status, stage_deployment, start_run
from accel.api.schemas.operations import (
    BatchOperationResponse,
    GenerateBatchRequest,
    GenerateRequest,
    OperationResponse,
    RunStatusResponse,
)
from accel.storage import ResultsStore
from accel.tasks.errors import RunNotFoundError

router = APIRouter(prefix="/api/generator", tags=["generator"])
KIND = ("generate",)


class GeneratedSkillResponse(BaseModel):
    """The skill a generation run made (its local path stays on the machine that made it)."""

    task_id: str
    status: str
    message: str | None
    skill_id: str | None = None
    model_ref: str | None = None
    model_revision: str | None = None
    family: str | None = None
    task: str | None = None
    target: str | None = None
    template: str | None = None
    template_version: str | None = None
    generator_version: str | None = None
    inputs: list[str] = []
    outputs: list[str] = []


def _generation(store: ResultsStore, task_id: str) -> tuple[GeneratedSkillResponse, str | None]:
    run = store.get_run(task_id)
    if run is None or run.kind != "generate":
        raise RunNotFoundError(f"no generation task {task_id} in the results store (it may not have started yet)")
    found = store.query(
        "SELECT skill_id FROM skills WHERE model_ref = ? AND target = ? ORDER BY created_at DESC LIMIT 1",
        [run.params.get("model"), run.params.get("target")],
    )
    skill = store.get_skill(found[0]["skill_id"]) if found and run.status == "completed" else None
    response = GeneratedSkillResponse(task_id=task_id, status=run.status, message=run.message)
    if skill is None:
        return response, None
    manifest = skill.manifest
    response = response.model_copy(
        update={
            **skill.model_dump(
                include={
                    "skill_id",
                    "model_ref",
                    "model_revision",
                    "family",
                    "task",
                    "target",
                    "template",
                    "template_version",
                    "generator_version",
                }
            ),
            "inputs": list(manifest.get("inputs") or {}),
            "outputs": list(manifest.get("outputs") or {}),
        }
    )
    return response, skill.path


@router.post("/model", status_code=202)
async def generate_model(
    request: GenerateRequest,
    prefect: PrefectDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationResponse:
    """Generate the skill of one model for one target (reused when it exists, unless `force`)."""
    check_model_refs([request.model], settings)
    deployment = stage_deployment("generate", request.target)
    return await start_run(prefect, deployment, request.model_dump(), "generate", principal, idempotency_key)


@router.post("/batch", status_code=202)
async def generate_batch(
    request: GenerateBatchRequest,
    prefect: PrefectDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchOperationResponse:
    """One generation task per model x target, each its own run."""
    check_model_refs(request.models, settings)
    operations = []
    for model in request.models:
        for target in request.targets:
            key = f"{idempotency_key}:{model}:{target}" if idempotency_key else None
            params = {"model": model, "target": target, "force": request.force}
            deployment = stage_deployment("generate", target)
            operations.append(await start_run(prefect, deployment, params, "generate", principal, key))
    return BatchOperationResponse(operations=operations)


@router.get("/status/{task_id}")
async def generator_status(task_id: str, prefect: PrefectDep, keys: KeysDep) -> RunStatusResponse:
    return await run_status(prefect, task_id, KIND, keys)


@router.get("/result/{task_id}")
async def generator_result(task_id: str, store: StoreDep) -> GeneratedSkillResponse:
    return _generation(store, task_id)[0]


@router.get(
    "/file/{task_id}",
    responses={200: {"description": "skill.py", "content": {"text/x-python": {"schema": {"type": "string"}}}}},
)
async def generator_file(task_id: str, store: StoreDep) -> PlainTextResponse:
    """The generated `skill.py` (text/x-python), when its skill folder is on this machine."""
    response, path = _generation(store, task_id)
    if path is None:
        raise RunNotFoundError(f"generation task {task_id} has no skill ({response.status}: {response.message})")
    source = Path(path) / "skill.py"
    if not source.is_file():
        raise RunNotFoundError(
            f"skill {response.skill_id} was generated on another machine ({path} is not here): "
            "read it there, or run the generation on a worker of this machine"
        )
    return PlainTextResponse(source.read_text(), media_type="text/x-python")


@router.get("/templates")
async def generator_templates() -> TemplatesResponse:
    return templates_report()


@router.get("/hardware")
async def generator_hardware(prefect: PrefectDep, store: StoreDep) -> HardwareResponse:
    return await hardware_report(prefect, store)


@router.websocket("/ws/{task_id}")
async def generator_socket(websocket: WebSocket, task_id: str) -> None:
    await websocket.app.state.relay.serve_socket(websocket, task_id)
