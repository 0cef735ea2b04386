"""Every route of the app refuses callers without the right key: read from the app's own route list, so a
route added later without auth fails here. WebSockets authenticate by header or by their first message;
a `run` key cancels only the runs it started; the gateway's principal is trusted only with its secret."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from accel.api.app import create_app
from accel.api.auth import EXEMPT_PATHS, GRANTS, Principal, scope_of
from accel.settings import Settings
from accel.storage.keys import KeyStore
from tests.prefect_http import prefect_http
from tests.storage.api_server import DEAD_PREFECT, bearer, issue_key

SMALLER = {"read": "worker", "run": "read", "worker": "run", "admin": "run"}  # a key one scope short


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("auth-home")


@pytest.fixture(scope="module")
def keys(home) -> dict[str, str]:
    """A key of each scope, and keys that must be refused: wrong, expired, revoked."""
    made = {scope: issue_key(home, scope, name=f"{scope} key") for scope in GRANTS}
    made["wrong"] = made["admin"][:-4] + ("AAAA" if not made["admin"].endswith("AAAA") else "BBBB")
    made["garbage"] = "not-a-key"
    made["expired"] = issue_key(home, "admin", name="expired")
    made["revoked"] = issue_key(home, "admin", name="revoked")
    with KeyStore(Settings(home=home).ops_path) as store:
        store.revoke(made["revoked"].split("_")[1])
    with sqlite3.connect(Settings(home=home).ops_path) as db:  # expired yesterday, without waiting for it
        db.execute("UPDATE api_keys SET expires = '2020-01-01T00:00:00+00:00' WHERE name = 'expired'")
    return made


@pytest.fixture(scope="module")
def app(home):
    return create_app(Settings(home=home, prefect_api_url=DEAD_PREFECT))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()).replace("-", "")[:12], path)


def _operations(app) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves; WEBSOCKET for sockets."""
    found = []
    for context in iter_route_contexts(app.routes):  # included routers' routes, as the app serves them
        route = context.original_route
        if isinstance(route, APIRoute):
            found += [(m, context.path_format) for m in sorted(route.methods)]
        elif isinstance(route, APIWebSocketRoute):
            found.append(("WEBSOCKET", context.path_format))
        else:
            found.append(("*", context.path or repr(route)))
    return found


def unguarded(app) -> list[str]:
    """Routes outside FastAPI's dependency system (add_route, mounts) that are not declared exempt."""
    return [path for method, path in _operations(app) if method == "*" and path not in EXEMPT_PATHS]


def test_every_route_is_guarded_or_declared_exempt(app):
    assert unguarded(app) == []
    app_with_a_raw_route = create_app(Settings(prefect_api_url=DEAD_PREFECT))
    app_with_a_raw_route.add_route("/api/raw", lambda request: None)
    assert unguarded(app_with_a_raw_route) == ["/api/raw"]  # what this test says about a route added so


def _http_cases():
    app = create_app(Settings(prefect_api_url=DEAD_PREFECT))
    return [(m, p) for m, p in _operations(app) if m not in ("*", "WEBSOCKET") and p not in EXEMPT_PATHS]


@pytest.mark.parametrize(("method", "path"), _http_cases(), ids=lambda v: str(v))
def test_every_http_route_refuses_callers_without_the_right_key(client, keys, method, path):
    url, needed = _concrete(path), scope_of(method, path)
    for label, headers in (
        ("no key", {}),
        ("wrong", bearer(keys["wrong"])),
        ("garbage", {"X-API-Key": keys["garbage"]}),
        ("expired", bearer(keys["expired"])),
        ("revoked", {"X-API-Key": keys["revoked"]}),
    ):
        answer = client.request(method, url, headers=headers, json={})
        assert answer.status_code == 401, (label, method, path, answer.text)
        assert set(answer.json()) == {"error", "detail"} and answer.json()["error"] == "authentication"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    smaller = client.request(method, url, headers=bearer(keys[SMALLER[needed]]), json={})
    assert smaller.status_code == 403 and smaller.json()["error"] == "permission_denied", (method, path, smaller.text)
    assert needed in smaller.json()["detail"]
    allowed = client.request(method, url, headers=bearer(keys[needed]), json={})
    assert allowed.status_code not in (401, 403), (method, path, allowed.text)  # the key it needs gets through
    assert client.request(method, url, headers=bearer(keys["admin"]), json={}).status_code not in (401, 403)


def _socket_paths():
    app = create_app(Settings(prefect_api_url=DEAD_PREFECT))
    return [p for m, p in _operations(app) if m == "WEBSOCKET"]


def _closed(client, path: str, headers: dict[str, str] | None = None, first: object = None) -> tuple[int, str]:
    with client.websocket_connect(path, headers=headers or {}) as ws:
        if first is not None:
            ws.send_text(first) if isinstance(first, str) else ws.send_json(first)
        with pytest.raises(WebSocketDisconnect) as closed:
            message = ws.receive_json()
            raise AssertionError(f"{path} sent data to a caller it should refuse: {message}")
    return closed.value.code, closed.value.reason


@pytest.mark.parametrize("path", _socket_paths())
def test_every_websocket_refuses_with_1008_before_any_run_data(client, keys, path):
    url = _concrete(path)
    for bad in ("wrong", "garbage", "expired", "revoked", "worker"):  # worker: a valid key without read
        code, reason = _closed(client, url, headers=bearer(keys[bad]))
        assert code == 1008 and reason, (bad, path)
        code, _ = _closed(client, url, first={"type": "auth", "token": keys[bad]})
        assert code == 1008, (bad, path)
    for first in ("ping", {"type": "ping"}, {"type": "auth"}, {"type": "auth", "token": 7}, "{not json"):
        code, reason = _closed(client, url, first=first)  # anything but an auth message first
        assert code == 1008 and "first message" in reason, (first, reason)


def test_a_websocket_authenticates_by_header_or_by_its_first_message(client, keys):
    run = str(uuid.uuid4())
    with client.websocket_connect(f"/api/workflows/ws/{run}", headers={"X-API-Key": keys["read"]}) as ws:
        first = ws.receive_json()  # run data at once: Prefect is away here, so the relay says so
        assert first["type"] == "error" and "does not answer" in first["message"]
    with client.websocket_connect(f"/api/workflows/ws/{run}") as ws:
        ws.send_json({"type": "auth", "token": keys["run"]})
        assert ws.receive_json() == {"type": "auth_success"}
        assert ws.receive_json()["type"] == "error"


def test_a_route_added_later_is_guarded_too(keys, home):
    app = create_app(Settings(home=home, prefect_api_url=DEAD_PREFECT))

    @app.get("/api/later")
    def later() -> dict:
        return {"ok": True}

    @app.post("/api/later")
    def later_post() -> dict:
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/api/later").status_code == 401
        assert client.get("/api/later", headers=bearer(keys["worker"])).status_code == 403
        assert client.get("/api/later", headers=bearer(keys["read"])).json() == {"ok": True}
        assert client.post("/api/later", headers=bearer(keys["read"])).status_code == 403


def test_exempt_routes_answer_without_a_key_and_say_nothing_of_the_deployment(client, keys):
    for path in ("/api/health", "/docs", "/redoc", "/openapi.json", "/docs-static/swagger-ui.css"):
        assert client.get(path).status_code == 200, path
    anonymous = client.get("/api/health").json()
    assert anonymous["status"] == "degraded" and anonymous["results_file"] is None and anonymous["prefect"] is None
    known = client.get("/api/health", headers=bearer(keys["read"])).json()
    assert known["results_file"].endswith("results.duckdb") and known["prefect"]["status"] == "unavailable"


def test_the_scope_table():
    assert scope_of("GET", "/api/test/status/{run_id}") == "read"
    assert scope_of("HEAD", "/api/results/summary") == "read"
    assert scope_of("WEBSOCKET", "/api/workflows/ws/{run_id}") == "read"
    assert scope_of("POST", "/api/workflows/pipeline") == "run"
    assert scope_of("POST", "/api/results/ingest") == "worker"
    assert scope_of("GET", "/api/keys") == scope_of("DELETE", "/api/keys/{key_id}") == "admin"
    assert scope_of("GET", "/api/keysmith") == "read"  # a prefix match only on whole path segments


def test_keys_over_http_are_admin_only_and_shown_once(client, keys):
    made = client.post("/api/keys", headers=bearer(keys["admin"]), json={"scopes": ["read"], "name": "dashboard"})
    assert made.status_code == 201, made.text
    key, record = made.json()["key"], made.json()["record"]
    assert client.get("/api/results/summary", headers=bearer(key)).status_code == 200
    listed = client.get("/api/keys", headers=bearer(keys["admin"])).json()["keys"]
    assert record["id"] in {k["id"] for k in listed} and key not in str(listed)
    assert not any("secret" in name for k in listed for name in k)
    assert client.post("/api/keys", headers=bearer(keys["admin"]), json={"scopes": ["root"]}).status_code == 422
    assert client.delete(f"/api/keys/{record['id']}", headers=bearer(keys["admin"])).json()["revoked"]
    assert client.get("/api/results/summary", headers=bearer(key)).status_code == 401
    assert client.delete("/api/keys/000000000000", headers=bearer(keys["admin"])).status_code == 404


def test_auth_off_serves_loopback_clients_only_and_is_refused_off_loopback(home):
    with pytest.raises(RuntimeError, match=r"ACCEL_AUTH=off while ACCEL_API_HOST=0\.0\.0\.0"):
        create_app(Settings(home=home, auth=False, api_host="0.0.0.0", prefect_api_url=DEAD_PREFECT))
    app = create_app(Settings(home=home, auth=False, prefect_api_url=DEAD_PREFECT))

    async def get(*hosts: str) -> list[httpx.Response]:
        answers = []
        async with app.router.lifespan_context(app):
            for host in hosts:
                transport = httpx.ASGITransport(app=app, client=(host, 5000))
                async with httpx.AsyncClient(transport=transport, base_url="http://accel.test") as http:
                    answers.append(await http.get("/api/results/summary"))
        return answers

    ipv4, ipv6, remote = asyncio.run(get("127.0.0.1", "::1", "10.1.2.3"))
    assert ipv4.status_code == ipv6.status_code == 200
    assert remote.status_code == 401 and "loopback" in remote.json()["detail"]


def test_the_gateways_principal_is_trusted_only_with_its_secret(home, keys):
    app = create_app(Settings(home=home, gateway_secret="s3cret", prefect_api_url=DEAD_PREFECT))
    principal = Principal(key_id="k1", name="via gateway", scopes=frozenset({"read"})).model_dump_json()
    with TestClient(app) as client:
        forwarded = {"X-Accel-Gateway-Secret": "s3cret", "X-Accel-Principal": principal}
        assert client.get("/api/results/summary", headers=forwarded).status_code == 200
        assert client.post("/api/keys", headers=forwarded, json={"scopes": ["read"]}).status_code == 403
        for forged in (
            {"X-Accel-Gateway-Secret": "guess", "X-Accel-Principal": principal},
            {"X-Accel-Principal": principal},
        ):
            assert client.get("/api/results/summary", headers=forged).status_code == 401
        bad = client.get("/api/results/summary", headers={**forwarded, "X-Accel-Principal": "{}"})
        assert bad.status_code == 401
    app = create_app(Settings(home=home, prefect_api_url=DEAD_PREFECT))  # no secret set: never trusted
    with TestClient(app) as client:
        assert client.get("/api/results/summary", headers=forwarded).status_code == 401


# -- object-level: a run key's runs are its own to cancel ---------------------------------------------------------


def _prefect_run(prefect_api: str, tags: list[str]) -> str:
    with prefect_http(prefect_api) as prefect:
        flow_id = prefect.post("/flows/", json={"name": "pipeline"}).raise_for_status().json()["id"]
        body = {"flow_id": flow_id, "name": f"auth-test-{uuid.uuid4().hex[:8]}", "tags": ["accel", *tags]}
        run_id = prefect.post("/flow_runs/", json=body).raise_for_status().json()["id"]
        state = {"state": {"type": "RUNNING", "name": "Running"}, "force": True}
        prefect.post(f"/flow_runs/{run_id}/set_state", json=state).raise_for_status()
    return run_id


def test_a_run_key_cancels_only_the_runs_it_started(prefect_api, tmp_path):
    home = tmp_path / "home"
    alice, bob, admin = issue_key(home, "run", name="alice"), issue_key(home, "run", name="bob"), issue_key(home)
    alice_id = alice.split("_")[1]
    with TestClient(create_app(Settings(home=home, prefect_api_url=prefect_api))) as client:
        runs = [_prefect_run(prefect_api, [f"accel-key:{alice_id}"]) for _ in range(3)]
        status = client.get(f"/api/workflows/{runs[0]}", headers=bearer(bob)).json()  # reading is read scope
        assert status["started_by"] == {"key_id": alice_id, "name": "alice"}
        for path in (f"/api/workflows/{runs[0]}/cancel", f"/api/test/cancel/{runs[0]}"):
            refused = client.post(path, headers=bearer(bob))
            assert refused.status_code in (403, 404) and "alice" not in refused.text  # 404: not a test run
        refused = client.post(f"/api/workflows/{runs[0]}/cancel", headers=bearer(bob))
        assert refused.status_code == 403 and "cancels only the runs it started" in refused.json()["detail"]
        assert client.get(f"/api/workflows/{runs[0]}", headers=bearer(admin)).json()["state"] == "RUNNING"
        assert client.post(f"/api/workflows/{runs[0]}/cancel", headers=bearer(alice)).status_code == 200
        assert client.post(f"/api/workflows/{runs[1]}/cancel", headers=bearer(admin)).status_code == 200
        unowned = _prefect_run(prefect_api, [])  # started outside the API (the nightly schedule)
        assert client.post(f"/api/workflows/{unowned}/cancel", headers=bearer(alice)).status_code == 403
        assert client.post(f"/api/workflows/{unowned}/cancel", headers=bearer(admin)).status_code == 200
        assert client.post(f"/api/workflows/{runs[2]}/cancel", headers=bearer(admin)).status_code == 200
