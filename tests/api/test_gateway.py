"""The unified gateway: components forwarded to real upstream processes, HTTP and WebSocket, 502 and 504.

Two real `accel serve --component` processes (results, on a seeded DuckDB file, and benchmark) are the
upstreams of an in-process unified app; a tiny Starlette app served by uvicorn in a thread is the
upstream that is slow, echoes what it was sent, and records the close code its socket got.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from accel.api.app import create_app
from accel.api.limits import MAX_BODY_BYTES
from accel.cli.main import run
from accel.settings import Settings, get_settings
from accel.storage.keys import KeyStore
from tests.storage.test_queries import BERT, seed_results

UNREACHABLE_PREFECT = "http://127.0.0.1:9/api"
SECRET = "gateway-test-secret-" + "x" * 24
# What the gateway sends up for an admin: a client talking to an upstream directly must forge it (with the secret).
AS_GATEWAY = {
    "X-Accel-Gateway-Secret": SECRET,
    "X-Accel-Principal": json.dumps({"key_id": "direct", "name": "test", "scopes": ["admin"]}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, process: subprocess.Popen | None, headers: dict[str, str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout_s} s")


def _serve(home: Path, name: str, *args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """`accel serve ARGS` in a real process on a free loopback port, its output in home/NAME.log."""
    port = free_port()
    env = {
        **os.environ,
        "ACCEL_HOME": str(home),
        "PREFECT_API_URL": UNREACHABLE_PREFECT,
        "ACCEL_GATEWAY_SECRET": SECRET,
        **env,
    }
    env.pop("ACCEL_RESULTS", None)
    command = [sys.executable, "-m", "accel.cli.main", "serve", "--port", str(port), *args]
    log = (home / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Real `accel serve --component results` (seeded) and `--component benchmark` processes: their URLs."""
    results_home = tmp_path_factory.mktemp("upstream-results")
    seed_results(results_home / "results.duckdb")
    bench_home = tmp_path_factory.mktemp("upstream-benchmark")
    started = [
        _serve(results_home, "results", "--component", "results"),
        _serve(bench_home, "benchmark", "--component", "benchmark"),
    ]
    try:
        for process, url in started:
            _wait_up(f"{url}/openapi.json", process, AS_GATEWAY)
        yield {"results": started[0][1], "benchmark": started[1][1]}
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(timeout=30)


class Tiny:
    """A tiny real upstream: slow on /api/results/slow, echoes headers and frames, records socket closes."""

    def __init__(self) -> None:
        self.closes: list[int] = []
        self.hits = 0
        self.go = threading.Event()  # set by a test once it read the first chunk of /drip
        self.released: bool | None = None
        self.first_chunk = threading.Event()  # set once /upload got the first chunk of its body
        routes = [
            Route("/api/results/slow", self.slow),
            Route("/api/results/headers", self.headers, methods=["GET", "POST"]),
            Route("/api/results/stream", self.stream),
            Route("/api/results/drip", self.drip),
            Route("/api/results/upload", self.upload, methods=["POST"]),
            WebSocketRoute("/api/benchmark/ws/{run_id}", self.echo),
        ]
        self.app = Starlette(routes=routes)

    async def slow(self, _: Request) -> JSONResponse:
        await asyncio.sleep(5)
        return JSONResponse({"late": True})

    async def headers(self, request: Request) -> JSONResponse:
        self.hits += 1
        body = await request.body()
        return JSONResponse({"headers": dict(request.headers), "size": len(body)}, headers={"X-Custom": "kept"})

    async def stream(self, _: Request) -> StreamingResponse:
        async def chunks():
            for i in range(5):
                yield f"chunk {i}\n".encode()
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def drip(self, _: Request) -> StreamingResponse:
        async def chunks():
            yield b"first\n"
            self.released = await asyncio.to_thread(self.go.wait, 10)  # True: the client read "first" already
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def upload(self, request: Request) -> JSONResponse:
        sizes = []
        async for chunk in request.stream():
            if chunk:
                sizes.append(len(chunk))
                self.first_chunk.set()
        return JSONResponse({"size": sum(sizes)})

    async def echo(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(f"hello {websocket.path_params['run_id']}")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.closes.append(message.get("code", 1005))
                return
            if message.get("text") == "close please":
                return await websocket.close(4321, reason="asked to")
            if message.get("text") is not None:
                await websocket.send_text(message["text"].upper())
            else:
                await websocket.send_bytes(bytes(reversed(message["bytes"])))


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[Tiny, str]]:
    upstream = Tiny()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(upstream.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield upstream, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _gateway(home: Path, upstreams: dict[str, str], **settings) -> TestClient:
    """The unified app forwarding `upstreams`, and a client holding an admin key of it."""
    settings = Settings(
        home=home, prefect_api_url=UNREACHABLE_PREFECT, gateway_secret=SECRET, upstream_timeout_s=1.0, **settings
    )
    app = create_app(settings, upstreams=upstreams)
    _, key = app.state.keys.create(["admin"], name="gateway tests")
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})


def _key(client: TestClient, *scopes: str) -> str:
    return client.app.state.keys.create(list(scopes), name="+".join(scopes))[1]


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory) -> Iterator[TestClient]:
    """The unified app with results and benchmark forwarded to the real upstream processes."""
    with _gateway(tmp_path_factory.mktemp("gateway"), upstreams) as client:
        yield client


@pytest.fixture(scope="module")
def tiny_gateway(tiny, tmp_path_factory) -> Iterator[TestClient]:
    _, url = tiny
    with _gateway(tmp_path_factory.mktemp("tiny-gateway"), {"results": url, "benchmark": url}) as client:
        yield client


@pytest.fixture(scope="module")
def real_gateway(tiny, tmp_path_factory) -> Iterator[httpx.Client]:
    """A real `accel serve` forwarding results to the tiny upstream: a client of it holding an admin key."""
    _, url = tiny
    home = tmp_path_factory.mktemp("real-gateway")
    with KeyStore(home / "ops.sqlite") as keys:
        key = keys.create(["admin"], name="gateway tests")[1]
    process, base = _serve(home, "gateway", ACCEL_UPSTREAM_RESULTS=url)
    try:
        _wait_up(f"{base}/api/health", process, {})
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


def _direct(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=AS_GATEWAY, timeout=30)


def test_get_with_query_is_forwarded(gateway, upstreams):
    params = {"model": BERT, "limit": 2, "offset": 1}
    through = gateway.get("/api/results/summary", params=params)
    with _direct(upstreams["results"]) as direct:
        expected = direct.get("/api/results/summary", params=params)
    assert through.status_code == 200, through.text
    assert through.json() == expected.json()
    assert (through.json()["limit"], through.json()["offset"], len(through.json()["rows"])) == (2, 1, 2)
    # the upstream's own refusal comes back as it is: status and body
    refused = gateway.get("/api/results/summary", params={"limit": 0})
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_request"
    assert gateway.get("/api/results/runs/nope").json()["error"] == "run_not_found"


def test_post_json_body_is_forwarded(gateway):
    batch = {
        "runs": [{"run_id": "through-the-gateway", "kind": "chain", "status": "running"}],
        "finished": [{"run_id": "through-the-gateway", "status": "completed", "message": "via gateway"}],
    }
    applied = gateway.post("/api/results/ingest", json=batch)
    assert applied.status_code == 200, applied.text
    assert (applied.json()["runs"], applied.json()["finished"]) == (1, 1)
    run = gateway.get("/api/results/runs/through-the-gateway").json()["run"]
    assert (run["status"], run["message"]) == ("completed", "via gateway")
    # the gateway's own file holds nothing of it: the upstream wrote it
    assert gateway.app.state.store.get_run("through-the-gateway") is None
    refused = gateway.post("/api/results/ingest", json={"runs": [], "surprise": 1})
    assert refused.status_code == 422 and "surprise" in refused.json()["detail"]


def test_streamed_export_is_forwarded(gateway, upstreams):
    with _direct(upstreams["results"]) as direct:
        expected = direct.get("/api/results/export", params={"format": "csv", "model": BERT})
    with gateway.stream("GET", "/api/results/export", params={"format": "csv", "model": BERT}) as through:
        body = b"".join(through.iter_raw())
        assert through.status_code == 200
        assert through.headers["x-row-count"] == expected.headers["x-row-count"] != "0"
        assert through.headers["content-disposition"] == 'attachment; filename="measurements.csv"'
        assert through.headers["content-type"].startswith("text/csv")
    assert body == expected.content and body.count(b"\n") == int(expected.headers["x-row-count"]) + 1


def test_benchmark_socket_is_forwarded(gateway):
    """The real benchmark service answers a socket whose run Prefect cannot read: its error and close code."""
    with gateway.websocket_connect("/api/benchmark/ws/0b5c4a3e-0000-4000-8000-000000000000") as ws:
        message = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (message["type"], message["run_id"]) == ("error", "0b5c4a3e-0000-4000-8000-000000000000")
    assert closed.value.code == 1013  # the relay's "try again later": Prefect is unreachable there


def test_openapi_lists_forwarded_components(gateway, upstreams):
    paths = gateway.get("/openapi.json").json()["paths"]
    for path in ("/api/results/summary", "/api/results/ingest", "/api/benchmark/run", "/api/test/run"):
        assert path in paths
    with _direct(upstreams["benchmark"]) as direct:
        alone = direct.get("/openapi.json").json()
    assert alone["info"]["title"] == "accel benchmark"
    assert {p.split("/")[2] for p in alone["paths"]} == {"benchmark"}


def test_in_process_routes_stay_in_process(gateway):
    health = gateway.get("/api/health").json()
    assert health["results_file"] == str(gateway.app.state.store.path)


def test_headers_both_ways(tiny_gateway):
    sent = {
        "X-Accel-Principal": '{"key_id":"forged"}',
        "X-Accel-Anything": "x",
        "X-Other": "kept",
        "TE": "trailers",
        "X-Forwarded-For": "10.9.9.9",
    }
    response = tiny_gateway.post("/api/results/headers?q=1", content=b"a" * 70_000, headers=sent)
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert response.json()["size"] == 70_000
    assert seen["x-other"] == "kept" and "te" not in seen
    assert seen["x-accel-gateway-secret"] == SECRET
    assert "x-accel-anything" not in seen and seen.get("x-accel-principal") != '{"key_id":"forged"}'
    assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-for"] == "testclient"  # never the claimed one
    assert response.headers["x-custom"] == "kept"
    assert len(response.headers.get_list("date")) <= 1  # the upstream's Date is not added to the gateway's own


def test_streamed_response_is_forwarded(tiny_gateway):
    with tiny_gateway.stream("GET", "/api/results/stream") as response:
        assert response.status_code == 200
        assert b"".join(response.iter_raw()) == b"".join(f"chunk {i}\n".encode() for i in range(5))


def test_slow_upstream_is_504(tiny_gateway):
    response = tiny_gateway.get("/api/results/slow")
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout" and "results service" in response.json()["detail"]


def test_socket_frames_both_ways_and_close_codes(tiny, tiny_gateway):
    upstream, _ = tiny
    with tiny_gateway.websocket_connect("/api/benchmark/ws/r1") as ws:
        assert ws.receive_text() == "hello r1"
        ws.send_text("ping")
        assert ws.receive_text() == "PING"
        ws.send_bytes(b"\x00\x01\x02")
        assert ws.receive_bytes() == b"\x02\x01\x00"
        ws.close(4000)
    deadline = time.monotonic() + 5
    while 4000 not in upstream.closes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 4000 in upstream.closes  # the client's close code reached the upstream
    with tiny_gateway.websocket_connect("/api/benchmark/ws/r2") as ws:
        assert ws.receive_text() == "hello r2"
        ws.send_text("close please")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4321, "asked to")  # and the upstream's reached the client


def test_upstream_down_is_502(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with _gateway(tmp_path, {"results": down, "benchmark": down}) as client:
        response = client.get("/api/results/summary")
        assert response.status_code == 502
        body = response.json()
        assert body["error"] == "upstream_unavailable" and down in body["detail"]
        assert set(body) == {"error", "detail"}
        with client.websocket_connect("/api/benchmark/ws/r") as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1014 and closed.value.reason.startswith("upstream_unavailable")
        # what is not forwarded still answers in-process
        assert client.get("/api/health").status_code == 200


def test_auth_happens_at_the_gateway(tiny, tiny_gateway):
    upstream, _ = tiny
    before = upstream.hits
    anonymous = tiny_gateway.get("/api/results/headers", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "authentication"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    reader = _key(tiny_gateway, "read")
    refused = tiny_gateway.post("/api/results/ingest", json={}, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and refused.json()["error"] == "permission_denied"
    assert upstream.hits == before  # neither reached the upstream
    seen = tiny_gateway.get("/api/results/headers", headers={"Authorization": "", "X-API-Key": reader}).json()[
        "headers"
    ]
    principal = json.loads(seen["x-accel-principal"])
    assert principal["scopes"] == ["read"] and principal["key_id"] == reader.split("_")[1]
    assert "x-api-key" not in seen and "authorization" not in seen  # the key itself stays at the gateway


def test_socket_auth_at_the_gateway(tiny_gateway):
    reader = _key(tiny_gateway, "read")
    with tiny_gateway.websocket_connect("/api/benchmark/ws/m1", headers={"Authorization": ""}) as ws:
        ws.send_json({"type": "auth", "token": reader})
        assert ws.receive_json() == {"type": "auth_success"}
        assert ws.receive_text() == "hello m1"  # the upstream's first frame, after the gateway's auth
    with tiny_gateway.websocket_connect("/api/benchmark/ws/m2", headers={"Authorization": ""}) as ws:
        ws.send_text("ping")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1008


def test_upstream_trusts_only_the_gateway(upstreams):
    for headers in (
        {},
        {**AS_GATEWAY, "X-Accel-Gateway-Secret": "not-it"},
        {"X-Accel-Principal": AS_GATEWAY["X-Accel-Principal"]},
    ):
        response = httpx.get(f"{upstreams['results']}/api/results/summary", headers=headers, timeout=30)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "authentication"
    with _direct(upstreams["results"]) as direct:
        assert direct.get("/api/results/summary").status_code == 200


def test_gateway_needs_the_secret_to_forward(tmp_path):
    with pytest.raises(RuntimeError, match="ACCEL_GATEWAY_SECRET"):
        create_app(Settings(home=tmp_path), upstreams={"results": "http://127.0.0.1:9"})


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ["--component", "dashboard"],
            {},
            "unknown component 'dashboard': accepted test, generator, benchmark, results",
        ),
        ([], {"ACCEL_UPSTREAM_BENCHMARK": "ftp://host:8002"}, "ACCEL_UPSTREAM_BENCHMARK: 'ftp://host:8002' is not"),
        ([], {"ACCEL_UPSTREAM_BENCHMARK": "http://127.0.0.1:9"}, "set the same secret for both"),
    ],
)
def test_serve_refuses_bad_input_in_one_line(capsys, monkeypatch, args, env, said):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        run(["serve", "--port", str(free_port()), *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert said in err and len(err.strip().splitlines()) == 1


def test_declared_body_past_the_cap_is_refused_at_the_gateway(tiny, tiny_gateway):
    upstream, _ = tiny
    before = upstream.hits
    response = tiny_gateway.post("/api/results/headers", content=b"a" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert upstream.hits == before


def test_response_streams_through_a_real_gateway(tiny, real_gateway):
    """The first chunk reaches the client while the upstream still holds the rest (nothing buffered whole)."""
    upstream, _ = tiny
    with real_gateway.stream("GET", "/api/results/drip") as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"first\n"
        upstream.go.set()
        assert b"".join(chunks) == b"second\n"
    assert upstream.released is True


def test_request_body_streams_through_a_real_gateway(tiny, real_gateway):
    """The upstream reads the first chunk of a body while the client has not sent the second yet."""
    upstream, _ = tiny
    early: list[bool] = []

    def body() -> Iterator[bytes]:
        yield b"a" * 1000
        early.append(upstream.first_chunk.wait(10))
        yield b"b" * 1000

    response = real_gateway.post("/api/results/upload", content=body())
    assert response.status_code == 200, response.text
    assert response.json() == {"size": 2000} and early == [True]
