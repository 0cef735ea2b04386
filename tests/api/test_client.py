"""The Python client against the real app (in process, and served by uvicorn) on the session's Prefect server.

Runs are made directly in Prefect (its REST API) and moved to their final state there, the way a worker
would: the client must return on every final state, Crashed included, and never poll forever.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.api.client import AccelAPIError, AccelClient, AsyncAccelClient
from accel.api.schemas.operations import OperationResponse, RunList, WorkflowResponse
from accel.settings import Settings
from accel.tasks.errors import ServiceUnavailableError
from tests.prefect_http import prefect_http
from tests.storage.api_server import issue_key

pytestmark = pytest.mark.timeout(120)


# -- runs made in Prefect directly, as a worker would move them ------------------------------------------------


def _prefect_run(prefect_api: str, flow: str = "pipeline", state: str = "RUNNING") -> str:
    with prefect_http(prefect_api) as prefect:
        flow_id = prefect.post("/flows/", json={"name": flow}).raise_for_status().json()["id"]
        body = {"flow_id": flow_id, "name": f"client-test-{uuid.uuid4().hex[:8]}", "tags": ["accel", "test"]}
        run_id = prefect.post("/flow_runs/", json=body).raise_for_status().json()["id"]
    _set_state(prefect_api, run_id, state)
    return run_id


def _set_state(prefect_api: str, run_id: str, state: str, message: str | None = None) -> None:
    body = {"state": {"type": state, "name": state.title(), "message": message}, "force": True}
    with prefect_http(prefect_api) as prefect:
        answer = prefect.post(f"/flow_runs/{run_id}/set_state", json=body).raise_for_status().json()
    assert answer["status"] == "ACCEPT", answer


def _cancel_started(prefect_api: str, answers) -> None:
    """Cancel the runs these answers started (OperationResponse, BatchOperationResponse)."""
    for answer in answers:
        for op in getattr(answer, "operations", None) or [answer]:
            if isinstance(op, OperationResponse):
                _set_state(prefect_api, op.operation_id, "CANCELLED", "cancelled by the client test")


def _later(seconds: float, fn, *args) -> threading.Thread:
    def act():
        time.sleep(seconds)
        fn(*args)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def client(prefect_api, accel_home, tiny_models) -> Iterator[AccelClient]:
    """The sync client, with an admin key, on the app in this process (a TestClient: its lifespan ran, WebSockets
    work); the tiny models' folder is the app's ACCEL_MODELS_DIR."""
    settings = Settings(prefect_api_url=prefect_api, models_dir=tiny_models["bert"].parent)
    with TestClient(create_app(settings)) as test_client:
        yield AccelClient(http_client=test_client, api_key=issue_key(accel_home))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_home(tmp_path_factory):
    return tmp_path_factory.mktemp("live-api-home")


@pytest.fixture(scope="module")
def live_key(live_home) -> str:
    """An admin key of the live API."""
    return issue_key(live_home)


@pytest.fixture
def live_key_env(live_key, monkeypatch) -> str:
    """ACCEL_API_KEY=the live API's key, for the CLI (`accel run --api`)."""
    from accel.settings import get_settings

    monkeypatch.setenv("ACCEL_API_KEY", live_key)
    get_settings.cache_clear()
    return live_key


@pytest.fixture(scope="module")
def live_api(prefect_api, live_home, tiny_models) -> Iterator[str]:
    """The app served by uvicorn on a free local port (what `accel up` runs); its base URL."""
    import uvicorn

    settings = Settings(prefect_api_url=prefect_api, home=live_home, models_dir=tiny_models["bert"].parent)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


# -- errors ---------------------------------------------------------------------------------------------------


def test_health_reports_prefect_and_the_store(client):
    health = client.health()
    assert health.status == "ok", health
    assert health.prefect.status == "ok" and health.results_store.status == "ok"


def test_unknown_run_is_a_404_api_error(client):
    missing = str(uuid.uuid4())
    with pytest.raises(AccelAPIError) as caught:
        client.workflow(missing)
    assert caught.value.status == 404 and caught.value.error == "run_not_found"
    assert missing in caught.value.detail
    assert str(caught.value).startswith("404 run_not_found: ")
    with pytest.raises(AccelAPIError, match="404"):
        client.test_status("not-a-uuid")


def test_bad_target_is_a_422_naming_the_accepted_targets(client):
    with pytest.raises(AccelAPIError) as caught:
        client.run_pipeline(["sentence-transformers/all-MiniLM-L6-v2"], ["tpu/magic"])
    err = caught.value
    assert err.status == 422 and err.is_request_error
    assert "tpu" in err.detail and "cpu/torch" in err.detail and "onnxruntime" in err.detail, err.detail


def test_a_post_prefect_cannot_start_is_a_503_with_retry_after(client):
    # The nightly is not deployed on the test Prefect server: the API says so, and says when to try again.
    with pytest.raises(AccelAPIError) as caught:
        client.run_nightly()
    err = caught.value
    assert err.status == 503 and not err.is_request_error
    assert "deployment" in err.detail and err.retry_after is not None


def test_an_api_that_is_not_there_is_service_unavailable():
    url = f"http://127.0.0.1:{_free_port()}"
    with AccelClient(url, timeout=2) as nobody, pytest.raises(ServiceUnavailableError, match=url):
        nobody.health()


def test_api_key_is_sent_as_a_bearer_token(prefect_api, monkeypatch, accel_home):
    from accel.cli.keys import write_secret
    from accel.settings import get_settings

    seen = []
    env_key, admin_key = issue_key(accel_home, "read"), issue_key(accel_home)
    write_secret(accel_home / "admin.key", admin_key)  # as `accel up` leaves it
    with TestClient(create_app(Settings(prefect_api_url=prefect_api))) as test_client:
        test_client.event_hooks["request"].append(lambda request: seen.append(request.headers.get("authorization")))
        assert isinstance(AccelClient(http_client=test_client).workflows(limit=5), RunList)  # admin.key
        monkeypatch.setenv("ACCEL_API_KEY", env_key)
        get_settings.cache_clear()
        assert isinstance(AccelClient(http_client=test_client).workflows(limit=5), RunList)  # ACCEL_API_KEY first
        with pytest.raises(AccelAPIError) as refused:
            AccelClient(http_client=test_client, api_key="explicit").workflows()
        assert refused.value.status == 401 and refused.value.error == "authentication"
        with pytest.raises(AccelAPIError, match="401 authentication"):
            list(AccelClient(http_client=test_client, api_key="explicit").stream(str(uuid.uuid4())))
    assert seen[:3] == [f"Bearer {admin_key}", f"Bearer {env_key}", "Bearer explicit"]


def test_every_method_reaches_a_route_and_reads_its_answer(client, prefect_api, tiny_models):
    """Each endpoint method against the real app: a typed answer, or the API's own error about the request, never
    the router's 404/405 for a path or method it does not have."""
    ghost, model = str(uuid.uuid4()), str(tiny_models["bert"])
    run_id = _prefect_run(prefect_api, flow="test", state="COMPLETED")
    calls = {
        "workflows": lambda: client.workflows(limit=3),
        "workflow": lambda: client.workflow(run_id),
        "cancel_workflow": lambda: client.cancel_workflow(run_id),
        "run_nightly": client.run_nightly,
        "run_pipeline": lambda: client.run_pipeline([model], ["cpu/torch"], idempotency_key=ghost),
        "run_test": lambda: client.run_test(model, "cpu/onnxruntime"),
        "test_status": lambda: client.test_status(run_id),
        "test_results": lambda: client.test_results(run_id),
        "test_runs": lambda: client.test_runs(limit=3),
        "cancel_test": lambda: client.cancel_test(run_id),
        "generate": lambda: client.generate(model, "cpu/openvino"),
        "generate_batch": lambda: client.generate_batch([model], ["cpu/torch"]),
        "generator_status": lambda: client.generator_status(ghost),
        "generator_result": lambda: client.generator_result(ghost),
        "generator_file": lambda: client.generator_file(ghost),
        "run_benchmark": lambda: client.run_benchmark(model, batch_sizes=[1], sequence_lengths=[8], rounds=1),
        "benchmark_status": lambda: client.benchmark_status(ghost),
        "benchmark_results": lambda: client.benchmark_results(ghost),
        "hardware": client.hardware,
        "targets": client.targets,
        "models": client.models,
        "templates": client.templates,
        "summary": client.summary,
        "compare": lambda: client.compare(model),
        "history": lambda: client.history(model, "cpu/torch"),
        "regressions": lambda: client.regressions(ghost),
        "recommend": lambda: client.recommend(model, 1, 8),
        "export": client.export,
        "run_records": lambda: client.run_records(ghost),
        "keys": client.keys,
        "create_key": lambda: client.create_key(["read"], "made by the client test", expires_days=1),
        "revoke_key": lambda: client.revoke_key("000000000000"),
    }
    answers = {}
    try:
        for name, call in calls.items():
            try:
                answers[name] = call()
            except AccelAPIError as err:
                assert err.error not in ("not_found", "method_not_allowed"), f"{name}: no such route: {err}"
                assert err.status in (404, 409, 422, 503), f"{name}: {err}"
                answers[name] = err
    finally:  # a run started where its deployment exists must not wait for a later test's worker
        _cancel_started(prefect_api, answers.values())
    assert isinstance(answers["workflow"], WorkflowResponse) and answers["workflow"].kind == "test"
    assert answers["test_status"].status == "completed"  # a test run, read through the test component
    assert {"cpu", "cuda"} <= {p.hardware for p in answers["hardware"].pools}
    assert "cpu/torch" in {t.target for t in answers["targets"].targets}
    assert answers["templates"].templates and isinstance(answers["export"], bytes)
    assert isinstance(answers["test_runs"], RunList) and run_id in {r.run_id for r in answers["test_runs"].runs}
    assert answers["generator_status"].status == 404 and answers["benchmark_status"].status == 404
    assert answers["create_key"].key.startswith("accel_") and answers["revoke_key"].status == 404
    assert answers["keys"].keys and all(k.id != answers["create_key"].key for k in answers["keys"].keys)


# -- wait: every final state ends it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status"),
    [("COMPLETED", "completed"), ("CRASHED", "failed"), ("FAILED", "failed"), ("CANCELLED", "cancelled")],
)
def test_wait_returns_on_every_final_state(client, prefect_api, state, status):
    run_id = _prefect_run(prefect_api)
    _later(0.5, _set_state, prefect_api, run_id, state, f"{state.title()} by the test")
    final = client.wait(run_id, timeout=30, poll_s=0.2)
    assert isinstance(final, WorkflowResponse)
    assert (final.run_id, final.status, final.state) == (run_id, status, state)
    assert final.message == f"{state.title()} by the test"


def test_wait_times_out_naming_the_run_and_its_status(client, prefect_api):
    run_id = _prefect_run(prefect_api, state="RUNNING")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"run {run_id} .* last status running \(Running\)"):
        client.wait(run_id, timeout=1.0, poll_s=0.2)
    assert time.monotonic() - started < 5
    with pytest.raises(AccelAPIError) as caught:  # a request error is not waited out
        client.wait(str(uuid.uuid4()), timeout=30, poll_s=0.2)
    assert caught.value.status == 404 and time.monotonic() - started < 10


def test_wait_on_an_api_that_stays_away_gives_up():
    url = f"http://127.0.0.1:{_free_port()}"
    with AccelClient(url, timeout=1) as nobody, pytest.raises(ServiceUnavailableError, match="does not answer"):
        nobody.wait(str(uuid.uuid4()), poll_s=0.05)  # no timeout given: still never forever


def test_async_client_waits_and_reads_through_asgi(prefect_api, accel_home):
    app = create_app(Settings(prefect_api_url=prefect_api))
    run_id = _prefect_run(prefect_api, state="RUNNING")
    key = issue_key(accel_home, "read")

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AsyncAccelClient("http://accel.test", transport=transport, api_key=key) as accel:
                assert (await accel.health()).status == "ok"
                with pytest.raises(AccelAPIError) as caught:
                    await accel.workflow(str(uuid.uuid4()))
                assert caught.value.status == 404
                _later(0.3, _set_state, prefect_api, run_id, "CRASHED", "Process exited with SIGKILL")
                final = await accel.wait(run_id, timeout=30, poll_s=0.1)
                listed = await accel.workflows(limit=200)
        return final, listed

    final, listed = asyncio.run(main())
    assert (final.status, final.state) == ("failed", "CRASHED")
    assert isinstance(listed, RunList) and run_id in {r.run_id for r in listed.runs}


# -- stream: the run's WebSocket messages until the server closes -------------------------------------------------


def test_stream_of_a_finished_run_is_its_snapshot_then_the_end(client, prefect_api):
    run_id = _prefect_run(prefect_api, state="COMPLETED")
    messages = list(client.stream(run_id))
    assert messages[0]["type"] == "snapshot" and messages[0]["run_id"] == run_id
    assert messages[-1]["status"] == "completed"
    assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages)


def test_stream_of_an_unknown_run_raises_404(client):
    with pytest.raises(AccelAPIError) as caught:
        list(client.stream(str(uuid.uuid4())))
    assert caught.value.status == 404


def test_stream_over_a_real_socket_follows_the_run_to_its_end(live_api, live_key, prefect_api):
    run_id = _prefect_run(prefect_api, state="RUNNING")
    seen = []
    with AccelClient(live_api, api_key=live_key) as accel:
        for message in accel.stream(run_id):
            seen.append(message)
            if message["type"] == "snapshot":
                _later(0.5, _set_state, prefect_api, run_id, "COMPLETED", "done")
        assert accel.workflow(run_id).status == "completed"
    assert seen[0]["type"] == "snapshot" and seen[0]["status"] == "running"
    assert seen[-1]["type"] == "state" and seen[-1]["status"] == "completed"


def test_async_stream_over_a_real_socket(live_api, live_key, prefect_api):
    run_id = _prefect_run(prefect_api, state="CANCELLED")

    async def main(key: str, run: str):
        async with AsyncAccelClient(live_api, api_key=key) as accel:
            return [m async for m in accel.stream(run)]

    messages = asyncio.run(main(live_key, run_id))
    assert messages[0]["type"] == "snapshot" and messages[-1]["status"] == "cancelled"
    with pytest.raises(AccelAPIError) as caught:
        asyncio.run(main(live_key, str(uuid.uuid4())))
    assert caught.value.status == 404
    with pytest.raises(AccelAPIError) as refused:  # a bad key: the socket closes 1008 before any run data
        asyncio.run(main(live_key + "x", run_id))
    assert (refused.value.status, refused.value.error) == (401, "authentication")


# -- results: records in, aggregates out ---------------------------------------------------------------------------


def test_ingest_then_read_the_run_back(client):
    from accel.storage import RecordBatch, RunFinish, RunRecord

    run_id = f"client-ingest-{uuid.uuid4().hex[:8]}"
    batch = RecordBatch(
        runs=[RunRecord(run_id=run_id, kind="benchmark", trigger="test")],
        finished=[RunFinish(run_id=run_id, status="completed", message="ingested by the client test")],
    )
    applied = client.ingest(batch)
    assert (applied.batch_id, applied.runs, applied.finished) == (batch.batch_id, 1, 1)
    assert client.ingest(batch).runs == 1  # a replay is harmless: the same upserts
    family = client.run_records(run_id)
    assert (family.run.run_id, family.run.status, family.run.message) == (
        run_id,
        "completed",
        batch.finished[0].message,
    )
    page = client.summary(limit=5)
    assert page.limit == 5 and page.total == len(page.rows) == 0  # a run with no measurement has no summary row
    exported = client.export(format="json")
    assert isinstance(exported, bytes) and json.loads(exported) == []  # no measurement in this store
    with pytest.raises(AccelAPIError) as caught:
        client.recommend("no/such-model", batch=1, seq=8)
    assert caught.value.status == 404 and "no/such-model" in caught.value.detail


# -- accel run --api: the pipeline through the API, followed over its WebSocket ---------------------------------------


def _accel(argv: list[str], capsys) -> tuple[int, str, str]:
    from accel.cli.main import run

    with pytest.raises(SystemExit) as done:
        run(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_run_api_bad_input_exits_2_with_one_line(live_api, live_key_env, capsys):
    code, _, err = _accel(["run", "x", "--targets", "tpu/magic", "--api", live_api], capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown hardware 'tpu'" in err
    code, _, err = _accel(["run", "no-such/model-anywhere", "--targets", "cpu/torch", "--api", live_api], capsys)
    assert code == 2 and err.startswith("accel: error: ") and "no-such/model-anywhere" in err, err
    assert err.count("\n") == 1


def test_run_api_that_is_not_there_exits_1_with_one_line(capsys):
    url = f"http://127.0.0.1:{_free_port()}"
    code, _, err = _accel(["run", "x", "--targets", "cpu/torch", "--api", url], capsys)
    assert code == 1 and err.count("\n") == 1 and url in err and "does not answer" in err


@pytest.fixture(scope="module")
def pipeline_deployed(prefect_api) -> str:
    """The pipeline's deployment on accel-cpu, as `accel up` makes it (no worker: the test plays the worker)."""
    import contextlib

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as prefect:
        with contextlib.suppress(ObjectAlreadyExists):
            prefect.create_work_pool(WorkPoolCreate(name="accel-cpu", type="process"))
        flow_id = prefect.create_flow_from_name("pipeline")
        return str(
            prefect.create_deployment(
                flow_id=flow_id, name="pipeline", work_pool_name="accel-cpu", entrypoint="accel.flows.pipeline:pipeline"
            )
        )


def _play_worker(prefect_api: str, api: str, key: str, deployment_id: str, known: set[str], model: str) -> None:
    """What a worker and its chains do: pick the new pipeline run up, send the chains' rows to the API, finish."""
    from accel.storage import RecordBatch, RunFinish, RunRecord

    filter_body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC"}
    deadline = time.monotonic() + 30
    run_id = None
    while run_id is None and time.monotonic() < deadline:
        runs = httpx.post(f"{prefect_api}/flow_runs/filter", json=filter_body, timeout=10).json()
        run_id = next((r["id"] for r in runs if r["id"] not in known), None)
        time.sleep(0.2)
    assert run_id, "the CLI created no pipeline run"
    _set_state(prefect_api, run_id, "RUNNING")
    time.sleep(0.5)
    chains = [f"{run_id}-chain-{i}" for i in range(2)]
    batch = RecordBatch(
        runs=[
            RunRecord(run_id=c, kind="chain", parent_run_id=run_id, params={"model": model, "target": t})
            for c, t in zip(chains, ("cpu/torch", "cpu/onnxruntime"), strict=True)
        ],
        finished=[
            RunFinish(run_id=chains[0], status="completed"),
            RunFinish(run_id=chains[1], status="failed", message="generation failed: no exporter matched"),
        ],
    )
    with AccelClient(api, api_key=key) as accel:
        accel.ingest(batch)
    _set_state(prefect_api, run_id, "COMPLETED", "2 chains ended")


def _pipeline_runs(prefect_api: str, deployment_id: str) -> set[str]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    return {r["id"] for r in httpx.post(f"{prefect_api}/flow_runs/filter", json=body, timeout=10).json()}


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_run_api_follows_the_run_and_prints_its_rows(
    live_api, live_key_env, prefect_api, pipeline_deployed, tiny_models, capsys, as_json
):
    model = str(tiny_models["bert"])
    known = _pipeline_runs(prefect_api, pipeline_deployed)
    worker = threading.Thread(
        target=_play_worker,
        args=(prefect_api, live_api, live_key_env, pipeline_deployed, known, model),
        daemon=True,
    )
    worker.start()
    argv = ["run", model, "--targets", "cpu/torch,cpu/onnxruntime", "--batch", "1", "--api", live_api]
    code, out, err = _accel([*argv, "--json"] if as_json else argv, capsys)
    worker.join(10)
    assert code == 1, err  # one target failed: exit 1, as in process
    assert "pipeline" in err and live_api in err
    if not as_json:  # the same table as in process
        assert "pipeline " in out and "cpu/onnxruntime" in out and "generation failed: no exporter matched" in out
        assert "passed" in out and "failed" in out
        return
    result = json.loads(out)
    assert result["status"] == "failed"
    rows = {r["target"]: r for r in result["results"]}
    assert rows["cpu/torch"]["status"] == "passed" and rows["cpu/torch"]["model"] == model
    assert rows["cpu/onnxruntime"]["status"] == "failed"
    assert rows["cpu/onnxruntime"]["message"] == "generation failed: no exporter matched"
