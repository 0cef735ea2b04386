"""The component and workflow routes against a real Prefect server (the session harness) with no worker:
runs are created through real deployments and wait, saying for what; bad input is a 4xx naming what is
accepted; nothing is a 500."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.settings import Settings
from tests.storage.api_server import bearer, issue_key


@pytest.fixture(scope="module")
def deployed(prefect_api):
    """Deployments of the test, generate, benchmark and pipeline flows on accel-cpu, as `accel up` makes them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    ids = []
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name="accel-cpu", type="process"))
        for flow, name, entrypoint in (
            ("test", "cpu", "accel.flows.stages:test_flow"),
            ("generate", "cpu", "accel.flows.stages:generate_flow"),
            ("benchmark", "cpu", "accel.flows.stages:benchmark_flow"),
            ("pipeline", "pipeline", "accel.flows.pipeline:pipeline"),
        ):
            flow_id = client.create_flow_from_name(flow)
            ids.append(
                client.create_deployment(flow_id=flow_id, name=name, work_pool_name="accel-cpu", entrypoint=entrypoint)
            )
    yield prefect_api
    # The runs these tests created wait on accel-cpu: gone before a later test starts a real worker there.
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids))):
            client.delete_flow_run(run.id)
        for deployment_id in ids:
            client.delete_deployment(deployment_id)


@pytest.fixture
def api(deployed, accel_home, tiny_models):
    """The app with an admin key; the tiny models' folder is its ACCEL_MODELS_DIR (model paths outside are refused)."""
    settings = Settings(prefect_api_url=deployed, models_dir=tiny_models["bert"].parent)
    headers = bearer(issue_key(accel_home, name="component tests"))
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=headers) as client:
        yield client


def test_a_test_run_is_created_waits_for_a_worker_and_cancels(api, tiny_models):
    body = {"model": str(tiny_models["bert"]), "target": "cpu/onnxruntime", "level": "basic"}
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    started = api.post("/api/test/run", json=body, headers=key)
    assert started.status_code == 202, started.text
    op = started.json()
    assert op["status"] == "initializing" and op["state"] == "SCHEDULED"
    assert "waiting for a worker on accel-cpu" in op["message"]
    assert op["run_url"].endswith(f"/runs/flow-run/{op['operation_id']}")
    assert op["started_by"]["name"] == "component tests"  # the key that started it (never its secret)
    assert api.post("/api/test/run", json=body, headers=key).json()["operation_id"] == op["operation_id"]
    assert api.post("/api/test/run", json=body).json()["operation_id"] != op["operation_id"]

    status = api.get(f"/api/test/status/{op['operation_id']}").json()
    assert status["status"] == "initializing" and "accel-cpu" in status["waiting_for"]
    assert status["started_by"] == op["started_by"]
    assert api.get(f"/api/benchmark/status/{op['operation_id']}").status_code == 404  # not a benchmark run
    assert op["operation_id"] in {r["run_id"] for r in api.get("/api/test/runs").json()["runs"]}

    cancelled = api.post(f"/api/test/cancel/{op['operation_id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] in ("CANCELLING", "CANCELLED")


def test_every_component_starts_its_own_deployment(api, tiny_models):
    model = str(tiny_models["bert"])
    gen = api.post("/api/generator/model", json={"model": model, "target": "cpu/openvino"})
    assert gen.status_code == 202 and gen.json()["kind"] == "generate", gen.text
    batch = api.post("/api/generator/batch", json={"models": [model], "targets": ["cpu/torch", "cpu/onnxruntime"]})
    assert batch.status_code == 202 and len(batch.json()["operations"]) == 2
    bench = api.post("/api/benchmark/run", json={"model": model, "target": "cpu/torch", "batch_sizes": [1, 4]})
    assert bench.status_code == 202 and bench.json()["kind"] == "benchmark", bench.text
    pipe = api.post("/api/workflows/pipeline", json={"models": [model], "targets": ["cpu/torch"], "level": "basic"})
    assert pipe.status_code == 202, pipe.text
    run = api.get(f"/api/workflows/{pipe.json()['operation_id']}").json()
    assert run["kind"] == "pipeline" and run["status"] == "initializing" and run["results"] == []
    assert pipe.json()["operation_id"] in {r["run_id"] for r in api.get("/api/workflows").json()["runs"]}


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/test/run", {"model": "org/model", "target": "cpu/tpu"}, "runtimes: torch, onnxruntime, openvino"),
        ("/api/test/run", {"model": "org/model", "level": "extreme"}, "basic"),
        ("/api/test/run", {"model": "/no/such/model"}, "outside the folders"),
        ("/api/test/run", {"model": "/etc"}, "ACCEL_MODELS_DIR"),
        ("/api/workflows/nightly", {"matrix": "/etc/passwd"}, "matrix"),  # a file name, never a path
        ("/api/workflows/nightly", {"matrix": "../../etc/hosts.yaml"}, "matrix"),
        ("/api/workflows/pipeline", {"models": ["../../../../etc"], "targets": ["cpu/torch"]}, "outside the folders"),
        (
            "/api/workflows/pipeline",
            {"models": ["o/m"] * 43, "targets": ["cpu/torch", "cpu/openvino", "cpu/onnxruntime"]},
            "at most 128",
        ),
        ("/api/test/run", {"model": "nobody/nothing-here"}, "Hugging Face"),
        ("/api/test/run", {"target": "cpu/torch"}, "model"),
        ("/api/benchmark/run", {"model": "org/m", "batch_sizes": [0]}, "positive"),
        ("/api/workflows/pipeline", {"models": [], "targets": ["cpu/torch"]}, "models"),
        ("/api/workflows/pipeline", {"models": ["org/m"], "targets": ["cpu/torch"], "colour": 1}, "colour"),
        ("/api/generator/batch", {"models": ["org/m"], "targets": ["gpu/torch"]}, "hardware"),
    ],
)
def test_bad_requests_are_422_naming_what_is_accepted(api, path, body, says):
    answer = api.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"error", "detail"} and says in answer.json()["detail"], answer.json()


def test_unknown_runs_are_404_and_a_missing_deployment_is_503(api):
    ghost = str(uuid.uuid4())
    for path in (
        f"/api/test/status/{ghost}",
        f"/api/test/results/{ghost}",
        f"/api/generator/status/{ghost}",
        f"/api/generator/result/{ghost}",
        f"/api/generator/file/{ghost}",
        f"/api/benchmark/status/{ghost}",
        f"/api/benchmark/results/{ghost}",
        f"/api/workflows/{ghost}",
        "/api/workflows/not-a-uuid",
    ):
        answer = api.get(path)
        assert answer.status_code == 404 and answer.json()["error"], (path, answer.text)
    missing = api.post("/api/workflows/nightly")  # not deployed in this harness
    assert missing.status_code == 503 and "nightly" in missing.json()["detail"]
    assert "Retry-After" in missing.headers


def test_catalogues_are_live(api):
    pools = {p["pool"]: p for p in api.get("/api/hardware").json()["pools"]}
    assert pools["accel-cpu"]["exists"] and pools["accel-cpu"]["online"] == 0
    assert not pools["accel-xpu"]["exists"]
    targets = {t["target"]: t for t in api.get("/api/targets").json()["targets"]}
    assert targets["cpu/torch"]["pool"] == "accel-cpu"
    templates = {t["family"] for t in api.get("/api/generator/templates").json()["templates"]}
    assert {"text-encoder", "text-generation", "vision"} <= templates
    models = {m["ref"] for m in api.get("/api/test/models").json()["models"]}
    assert "sentence-transformers/all-MiniLM-L6-v2" in models  # the packaged demo model
    health = api.get("/api/health").json()
    assert health["status"] == "ok" and health["prefect"]["status"] == "ok"


def test_public_models_keep_local_paths_on_their_machine(api):
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "skill_path" not in schemas["ChainOutcome"]["properties"]
    assert "path" not in schemas["GeneratedSkillResponse"]["properties"]
