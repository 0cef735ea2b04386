"""The WebSocket relay against a real Prefect: the app served by uvicorn, clients on real websockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from fastapi import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from accel.api.app import create_app
from accel.settings import Settings
from tests.api.test_prefect_client import PrefectRest
from tests.storage.api_server import bearer, issue_key

TIMEOUT_S = 20
LAGS_MS: list = []  # receipt - ts of every message (ts: when Prefect says the event occurred)


KEY: list[str] = []  # a read key of the app `served` runs


def watch(url: str, **kwargs):
    """A client of the relay, sending its key in the handshake."""
    return connect(url, additional_headers=bearer(KEY[-1]), **kwargs)


@contextlib.asynccontextmanager
async def served(prefect_api: str):
    """The accel app on a free port with the relay on /test/ws/{run_id}: (app, ws base URL)."""
    settings = Settings(prefect_api_url=prefect_api)
    KEY.append(issue_key(settings.home, "read"))
    app = create_app(settings)

    @app.websocket("/test/ws/{run_id}")
    async def watch(websocket: WebSocket, run_id: str) -> None:
        await websocket.app.state.relay.serve_socket(websocket, run_id)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield app, f"ws://127.0.0.1:{sock.getsockname()[1]}/test/ws"
    finally:
        server.should_exit = True
        await task


async def receive(ws) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    if message.get("type") in ("state", "progress"):
        LAGS_MS.append((message["type"], datetime.now(UTC) - datetime.fromisoformat(message["ts"])))
    return message


async def until_closed(ws) -> list[dict]:
    """Every message left until the server closes the socket."""
    messages = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            messages.append(await receive(ws))
    return messages


def run_async(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_snapshot_then_every_state_and_progress_of_the_tree_through_completion(prefect_api):
    async def body():
        rest = PrefectRest(prefect_api)
        async with served(prefect_api) as (_app, base):
            root = await rest.run("accel-relay-pipeline", state="PENDING")
            async with watch(f"{base}/{root}") as ws:
                snapshot = await receive(ws)
                assert snapshot["type"] == "snapshot" and snapshot["run_id"] == root and snapshot["seq"] == 1
                assert (snapshot["state"], snapshot["status"], snapshot["stage"]) == (
                    "PENDING",
                    "initializing",
                    "accel-relay-pipeline",
                )
                assert snapshot["descendants"] == []
                LAGS_MS.clear()
                await rest.set_state(root, "RUNNING")
                running = await receive(ws)
                assert (running["type"], running["state"], running["status"]) == ("state", "RUNNING", "running")
                child = await rest.run("accel-relay-chain", parent_run=root, state="PENDING")
                await rest.set_state(child, "RUNNING")
                await rest.progress(child, "generate", "export", 0.5)
                await rest.set_state(child, "COMPLETED")
                await rest.progress(root, "report", "publish", 1.0)
                await rest.set_state(root, "COMPLETED", "all targets passed")
                rest_of_it = await until_closed(ws)
                assert ws.close_code == 1000
        await rest.aclose()
        messages = [snapshot, running, *rest_of_it]
        seqs = [m["seq"] for m in messages]
        assert seqs == sorted(set(seqs)), seqs
        seen = [(m["type"], m["run_id"], m.get("state"), m.get("stage")) for m in messages[1:]]
        assert seen == [
            ("state", root, "RUNNING", "accel-relay-pipeline"),
            ("state", child, "PENDING", "accel-relay-chain"),
            ("state", child, "RUNNING", "accel-relay-chain"),
            ("progress", child, "RUNNING", "generate"),
            ("state", child, "COMPLETED", "accel-relay-chain"),
            ("progress", root, "RUNNING", "report"),
            ("state", root, "COMPLETED", "accel-relay-pipeline"),
        ]
        progress = messages[4]
        assert (progress["progress"], progress["step"], progress["model"]) == (0.5, "export", "m")
        final = messages[-1]
        assert (final["status"], final["progress"], final["message"]) == ("completed", 1.0, "all targets passed")
        assert all(datetime.fromisoformat(m["ts"]).tzinfo for m in messages)
        lags = [f"{kind} {lag.total_seconds() * 1000:.0f}" for kind, lag in LAGS_MS]
        print(f"relay lag (event occurred -> client received), ms: {', '.join(lags)}")

    run_async(body())


def test_two_clients_share_one_upstream_and_pings_get_pongs(prefect_api):
    async def body():
        rest = PrefectRest(prefect_api)
        async with served(prefect_api) as (app, base):
            relay = app.state.relay
            root = await rest.run("accel-relay-pipeline", state="RUNNING")
            async with watch(f"{base}/{root}") as first, watch(f"{base}/{root}") as second:
                assert (await receive(first))["type"] == (await receive(second))["type"] == "snapshot"
                assert relay.upstream_count == 1 and len(relay.upstream(root).clients) == 2
                assert relay.upstream(root).connections == 1
                await first.send("ping")
                assert await receive(first) == {"type": "pong"}
                await second.send(json.dumps({"type": "ping"}))
                assert await receive(second) == {"type": "pong"}
                await rest.set_state(root, "FAILED", "a target failed")
                for ws in (first, second):
                    messages = await until_closed(ws)
                    assert [(m["type"], m["state"], m["status"]) for m in messages] == [("state", "FAILED", "failed")]
                    assert messages[0]["seq"] == 2 and ws.close_code == 1000
            for _ in range(100):
                if relay.upstream_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert relay.upstream_count == 0  # the last client left: the subscription closed

            # a run that already ended: its snapshot, its final state, closed
            async with watch(f"{base}/{root}") as late:
                messages = await until_closed(late)
                assert [(m["type"], m["state"]) for m in messages] == [("snapshot", "FAILED"), ("state", "FAILED")]
                assert late.close_code == 1000
        await rest.aclose()

    run_async(body())


def test_an_unknown_run_gets_an_error_and_close_4404(prefect_api):
    async def body():
        async with served(prefect_api) as (app, base):
            for run_id in (str(uuid.uuid4()), "not-a-run"):
                async with watch(f"{base}/{run_id}") as ws:
                    messages = await until_closed(ws)
                    assert [m["type"] for m in messages] == ["error"]
                    assert "no run" in messages[0]["message"]
                    assert ws.close_code == 4404
            assert app.state.relay.upstream_count == 0

    run_async(body())


def test_a_client_is_told_when_prefect_does_not_answer():
    async def body():
        async with served("http://127.0.0.1:9/api") as (_app, base), watch(f"{base}/{uuid.uuid4()}") as ws:
            messages = await until_closed(ws)
            assert [m["type"] for m in messages] == ["error"]
            assert "Prefect at http://127.0.0.1:9/api does not answer" in messages[0]["message"]
            assert ws.close_code == 1013  # try again later

    run_async(body())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_prefect(home: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_ENABLED": "false",
    }
    prefect = Path(sys.executable).with_name("prefect")
    return subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def _wait_healthy(api_url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{api_url}/health", timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise TimeoutError(f"Prefect at {api_url} did not start in {timeout_s} s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def test_a_client_gets_the_terminal_state_exactly_once_across_a_prefect_restart(tmp_path):
    """Prefect restarts while a client watches; the run ends while it is down: the client still learns it."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"

    async def body():
        server = _start_prefect(tmp_path / "prefect-home", port)
        try:
            await _wait_healthy(api_url)
            rest = PrefectRest(api_url)
            async with served(api_url) as (app, base):
                root = await rest.run("accel-relay-restart", state="RUNNING")
                async with watch(f"{base}/{root}") as ws:
                    assert (await receive(ws))["state"] == "RUNNING"
                    upstream = app.state.relay.upstream(root)
                    await asyncio.to_thread(_stop, server)
                    server = _start_prefect(tmp_path / "prefect-home", port)
                    await _wait_healthy(api_url)
                    await rest.set_state(root, "COMPLETED")  # possibly before the relay is back: REST catches it up
                    messages = await until_closed(ws)
                    assert [(m["type"], m["state"]) for m in messages] == [("state", "COMPLETED")]
                    assert ws.close_code == 1000 and upstream.connections >= 2
            await rest.aclose()
        finally:
            _stop(server)

    run_async(body(), timeout=240)


def test_a_real_flow_its_subflow_and_their_progress_events_are_relayed(prefect_api):
    """Prefect's own engine and event client (tasks/progress.py), not hand-made REST calls."""
    import queue
    import threading

    from prefect import flow
    from prefect.runtime import flow_run

    from accel.tasks.progress import emit_progress

    started: queue.Queue[str] = queue.Queue()
    go = threading.Event()

    @flow(name="accel-relay-real-chain")
    def chain_flow() -> None:
        emit_progress("generate", "export", 0.5, model="tiny", target="cpu/torch")
        emit_progress("generate", "export", 1.0, model="tiny", target="cpu/torch")

    @flow(name="accel-relay-real-pipeline")
    def pipeline_flow() -> None:
        started.put(str(flow_run.id))
        go.wait(30)
        chain_flow()

    async def body():
        async with served(prefect_api) as (_app, base):
            done = asyncio.create_task(asyncio.to_thread(pipeline_flow))
            root = await asyncio.to_thread(started.get, True, 30)
            async with watch(f"{base}/{root}") as ws:
                snapshot = await receive(ws)
                go.set()
                messages = [snapshot, *await until_closed(ws)]
                assert ws.close_code == 1000
            await done
        return root, messages

    root, messages = run_async(body())
    assert messages[0]["type"] == "snapshot" and messages[0]["state"] == "RUNNING"
    children = {m["run_id"] for m in messages if m["run_id"] != root}
    assert len(children) == 1
    states = [(m["run_id"] == root, m["state"]) for m in messages[1:] if m["type"] == "state"]
    assert states[-1] == (True, "COMPLETED") and states.count((True, "COMPLETED")) == 1
    assert (False, "RUNNING") in states and (False, "COMPLETED") in states
    progress = [(m["stage"], m["progress"], m["model"], m["target"]) for m in messages if m["type"] == "progress"]
    assert progress == [("generate", 0.5, "tiny", "cpu/torch"), ("generate", 1.0, "tiny", "cpu/torch")]
    assert {m["stage"] for m in messages if m["type"] == "state" and m["run_id"] != root} == {"accel-relay-real-chain"}


def test_a_real_socket_authenticates_by_its_first_message_or_is_closed_1008(prefect_api):
    """Like Prefect's events socket: no key in the URL or the handshake, the key in the first message."""

    async def body():
        rest = PrefectRest(prefect_api)
        async with served(prefect_api) as (_app, base):
            root = await rest.run("accel-relay-auth", state="COMPLETED")
            async with connect(f"{base}/{root}") as ws:
                await ws.send(json.dumps({"type": "auth", "token": KEY[-1]}))
                assert json.loads(await ws.recv()) == {"type": "auth_success"}
                messages = await until_closed(ws)
                assert [m["type"] for m in messages][:1] == ["snapshot"] and ws.close_code == 1000
            for first in (json.dumps({"type": "auth", "token": KEY[-1] + "x"}), "ping"):
                async with connect(f"{base}/{root}") as ws:
                    await ws.send(first)
                    assert await until_closed(ws) == []  # not one message of the run
                    assert ws.close_code == 1008
            async with connect(f"{base}/{root}", additional_headers=bearer(KEY[-1][:-2])) as ws:
                assert await until_closed(ws) == [] and ws.close_code == 1008
        await rest.aclose()

    run_async(body())
