"""A typed Python client of the accel API: `AccelClient` (sync) and `AsyncAccelClient` (async), on httpx.

    with AccelClient("http://127.0.0.1:8000") as accel:
        op = accel.run_pipeline(["sentence-transformers/all-MiniLM-L6-v2"], ["cpu/torch"])
        for message in accel.stream(op.operation_id):  # the run's WebSocket messages, until it ends
            print(message["type"], message.get("stage"), message.get("message"))
        final = accel.wait(op.operation_id)             # completed, failed or cancelled
        print(accel.workflow(op.operation_id).results)

Every method of `AsyncAccelClient` is the same, awaited (`stream` is an async iterator there).
Errors: an answer that is not 2xx raises `AccelAPIError(status, error, detail)` (the API's JSON error);
an API that cannot be reached raises `accel.tasks.errors.ServiceUnavailableError`.

Defaults come from the settings: `http://{ACCEL_API_HOST}:{ACCEL_API_PORT}`, and `ACCEL_API_KEY` (else the
admin key `accel up` wrote to `$ACCEL_HOME/admin.key`) sent as `Authorization: Bearer ...` on every request
and on the WebSocket's handshake. `transport=` takes any httpx transport (tests pass `httpx.ASGITransport(app)`
to the async client); `http_client=` an httpx client to use as it is (a starlette `TestClient` for the
sync client, WebSockets included). `stream` opens its own WebSocket to `base_url` (httpx carries none), so
on an ASGI transport only the sync client over a TestClient streams; over a real server both do.

Imports httpx, pydantic and accel's API schemas; the models defined beside the routes (and the store's
record models, which import duckdb) when a method needs them; websockets when `stream` is used. Never the
ML stack nor Prefect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, TypeAdapter

from accel.api.schemas.operations import (
    BatchOperationResponse,
    OperationResponse,
    RunList,
    RunStatusResponse,
    WorkflowResponse,
)
from accel.api.schemas.results import (
    CompareResponse,
    ExportFormat,
    HistoryResponse,
    Metric,
    Recommendation,
    RegressionsResponse,
    SummaryPage,
)
from accel.tasks.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from accel.api.catalogue import HardwareResponse, ModelsResponse, TargetsResponse, TemplatesResponse
    from accel.api.routes.benchmark import BenchmarkResults
    from accel.api.routes.generator import GeneratedSkillResponse
    from accel.api.routes.health import HealthResponse
    from accel.api.routes.keys import CreatedKey, KeyList
    from accel.api.routes.test import TestResults
    from accel.storage import IngestResult, RecordBatch, RunFamily
    from accel.storage.keys import ApiKeyRecord

__all__ = ["TERMINAL_STATUSES", "AccelAPIError", "AccelClient", "AsyncAccelClient"]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# The relay closes with 4404 for a run it does not know (a 404 on the socket).
WS_RUN_NOT_FOUND = 4404
WS_POLICY_VIOLATION = 1008
# Models defined beside the routes or in the store (which imports duckdb) are imported when first used.
ROUTES, CATALOGUE, STORAGE = "accel.api.routes.", "accel.api.catalogue", "accel.storage"


class AccelAPIError(Exception):
    """The API answered, and not with success: its HTTP status and its JSON `{"error", "detail"}`."""

    def __init__(self, status: int, error: str, detail: str, retry_after: float | None = None):
        super().__init__(status, error, detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after

    @property
    def is_request_error(self) -> bool:
        """A 4xx: the request was wrong (the CLI's exit code 2), not the service."""
        return 400 <= self.status < 500

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.detail}"


def _unavailable(base_url: str, err: Exception) -> Exception:
    reason = str(err) or type(err).__name__
    return ServiceUnavailableError(f"the accel API at {base_url} does not answer ({reason}); is `accel up` running?")


def _api_error(response: httpx.Response) -> AccelAPIError:
    try:
        body = response.json()
    except ValueError:
        body = None
    retry = response.headers.get("Retry-After")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    if isinstance(body, dict) and "error" in body and "detail" in body:
        return AccelAPIError(response.status_code, str(body["error"]), str(body["detail"]), retry_after)
    text = " ".join(response.text.split())[:300] or response.reason_phrase
    return AccelAPIError(response.status_code, "http_error", text, retry_after)


def _default_base_url() -> str:
    from accel.settings import get_settings

    settings = get_settings()
    return f"http://{settings.api_host}:{settings.api_port}"


def _default_api_key() -> str | None:
    from accel.settings import get_settings

    return get_settings().client_api_key()


def _ws_url(base_url: str, path: str) -> str:
    url = httpx.URL(base_url)
    scheme = "wss" if url.scheme == "https" else "ws"
    return str(url.copy_with(scheme=scheme, path=url.path.rstrip("/") + path, query=None))


def _model(module: str, name: str) -> Any:
    """A response model the API defines beside its routes or in the store, imported when first used."""
    import importlib

    return getattr(importlib.import_module(module), name)


class _Call:
    """One request: what to send and how to read the answer (a model, a type, text or bytes)."""

    def __init__(
        self,
        method: str,
        path: str,
        into: Any = None,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
    ):
        self.method, self.path, self.into, self.raw = method, path, into, raw
        self.params = {k: v for k, v in (params or {}).items() if v is not None} or None
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        elif isinstance(body, dict):
            body = {k: v for k, v in body.items() if v is not None}
        self.body = body
        self.headers = {k: v for k, v in (headers or {}).items() if v is not None}

    def read(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _api_error(response)
        if self.raw == "text":
            return response.text
        if self.raw == "bytes":
            return response.content
        data = response.json()
        if self.into is None or self.into is dict:
            return data
        if isinstance(self.into, type) and issubclass(self.into, BaseModel):
            return self.into.model_validate(data)
        return TypeAdapter(self.into).validate_python(data)


def _path_id(run_id: str) -> str:
    from urllib.parse import quote

    return quote(str(run_id), safe="")


class _Endpoints:
    """Every endpoint once; `_send` (sync or async) carries it out."""

    def _send(self, call: _Call) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _start(self, path: str, into: type, body: dict[str, Any], idempotency_key: str | None) -> Any:
        return self._send(_Call("POST", path, into, body=body, headers={"Idempotency-Key": idempotency_key}))

    # -- workflows: the pipeline (generate -> test -> benchmark on each target) and the nightly matrix
    def run_pipeline(
        self,
        models: list[str],
        targets: list[str],
        batch_sizes: list[int] | None = None,
        sequence_lengths: list[int] | None = None,
        level: str = "comprehensive",
        force: bool = False,
        idempotency_key: str | None = None,
        min_seconds: float | None = None,
        **bench: Any,
    ) -> OperationResponse:
        """Start a pipeline of `models` x `targets`; a retry with the same `idempotency_key` gets the same run.

        `bench` takes the request's other benchmark fields (min_iters, rounds, generate_batch_sizes,
        prompt_tokens, new_tokens); unset ones keep the defaults."""
        body = {
            "models": models,
            "targets": targets,
            "batch_sizes": batch_sizes,
            "sequence_lengths": sequence_lengths,
            "min_seconds": min_seconds,
            "level": level,
            "force": force,
            **{name: value for name, value in bench.items() if value is not None},
        }
        return self._start("/api/workflows/pipeline", OperationResponse, body, idempotency_key)

    def run_nightly(self, matrix: str | None = None, idempotency_key: str | None = None) -> OperationResponse:
        """Start the nightly matrix now (`matrix`: a matrix file on the worker, default nightly.yaml)."""
        return self._start("/api/workflows/nightly", OperationResponse, {"matrix": matrix}, idempotency_key)

    def workflow(self, run_id: str) -> WorkflowResponse:
        """Any run's status (pipeline, chain, stage) and, for a pipeline, its result rows."""
        return self._send(_Call("GET", f"/api/workflows/{_path_id(run_id)}", WorkflowResponse))

    def workflows(self, limit: int = 50, offset: int = 0) -> RunList:
        return self._send(_Call("GET", "/api/workflows", RunList, params={"limit": limit, "offset": offset}))

    def cancel_workflow(self, run_id: str) -> WorkflowResponse:
        """Cancel the run and every run it started that has not ended."""
        return self._send(_Call("POST", f"/api/workflows/{_path_id(run_id)}/cancel", WorkflowResponse))

    # -- test: the checks of one model on one target
    def run_test(
        self, model: str, target: str = "cpu/torch", level: str = "basic", idempotency_key: str | None = None
    ) -> OperationResponse:
        body = {"model": model, "target": target, "level": level}
        return self._start("/api/test/run", OperationResponse, body, idempotency_key)

    def test_status(self, run_id: str) -> RunStatusResponse:
        return self._send(_Call("GET", f"/api/test/status/{_path_id(run_id)}", RunStatusResponse))

    def test_results(self, run_id: str) -> TestResults:
        """The checks the run recorded so far, with the run's verdict (`TestResults`)."""
        return self._send(_Call("GET", f"/api/test/results/{_path_id(run_id)}", _model(ROUTES + "test", "TestResults")))

    def test_runs(self, limit: int = 50, offset: int = 0) -> RunList:
        return self._send(_Call("GET", "/api/test/runs", RunList, params={"limit": limit, "offset": offset}))

    def cancel_test(self, run_id: str) -> RunStatusResponse:
        return self._send(_Call("POST", f"/api/test/cancel/{_path_id(run_id)}", RunStatusResponse))

    # -- generator: the skill of a model for a target
    def generate(
        self, model: str, target: str = "cpu/torch", force: bool = False, idempotency_key: str | None = None
    ) -> OperationResponse:
        body = {"model": model, "target": target, "force": force}
        return self._start("/api/generator/model", OperationResponse, body, idempotency_key)

    def generate_batch(
        self, models: list[str], targets: list[str], force: bool = False, idempotency_key: str | None = None
    ) -> BatchOperationResponse:
        body = {"models": models, "targets": targets, "force": force}
        return self._start("/api/generator/batch", BatchOperationResponse, body, idempotency_key)

    def generator_status(self, run_id: str) -> RunStatusResponse:
        return self._send(_Call("GET", f"/api/generator/status/{_path_id(run_id)}", RunStatusResponse))

    def generator_result(self, run_id: str) -> GeneratedSkillResponse:
        """The skill the generation run made (`GeneratedSkillResponse`)."""
        into = _model(ROUTES + "generator", "GeneratedSkillResponse")
        return self._send(_Call("GET", f"/api/generator/result/{_path_id(run_id)}", into))

    def generator_file(self, run_id: str) -> str:
        """The generated skill.py (when its skill folder is on the API's machine)."""
        return self._send(_Call("GET", f"/api/generator/file/{_path_id(run_id)}", raw="text"))

    # -- benchmark: latency, throughput and memory of a skill at each shape
    def run_benchmark(
        self,
        model: str,
        target: str = "cpu/torch",
        batch_sizes: list[int] | None = None,
        sequence_lengths: list[int] | None = None,
        rounds: int | None = None,
        min_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResponse:
        body = {
            "model": model,
            "target": target,
            "batch_sizes": batch_sizes,
            "sequence_lengths": sequence_lengths,
            "rounds": rounds,
            "min_seconds": min_seconds,
        }
        return self._start("/api/benchmark/run", OperationResponse, body, idempotency_key)

    def benchmark_status(self, run_id: str) -> RunStatusResponse:
        return self._send(_Call("GET", f"/api/benchmark/status/{_path_id(run_id)}", RunStatusResponse))

    def benchmark_results(self, run_id: str) -> BenchmarkResults:
        """Every point the run measured so far, each with its noisy flag (`BenchmarkResults`)."""
        into = _model(ROUTES + "benchmark", "BenchmarkResults")
        return self._send(_Call("GET", f"/api/benchmark/results/{_path_id(run_id)}", into))

    # -- what there is: hardware pools and workers, targets, models, templates, health
    def health(self) -> HealthResponse:
        """status (ok, degraded), version, and the api, prefect and results_store components."""
        return self._send(_Call("GET", "/api/health", _model(ROUTES + "health", "HealthResponse")))

    def hardware(self) -> HardwareResponse:
        """The work pools with their live workers, and what each machine that recorded a profile runs."""
        return self._send(_Call("GET", "/api/hardware", _model(CATALOGUE, "HardwareResponse")))

    def targets(self) -> TargetsResponse:
        return self._send(_Call("GET", "/api/targets", _model(CATALOGUE, "TargetsResponse")))

    def models(self) -> ModelsResponse:
        """The models that resolve on the API's machine, and those run before."""
        return self._send(_Call("GET", "/api/test/models", _model(CATALOGUE, "ModelsResponse")))

    def templates(self) -> TemplatesResponse:
        return self._send(_Call("GET", "/api/generator/templates", _model(CATALOGUE, "TemplatesResponse")))

    # -- results: aggregates of the store, each figure with its noisy flag
    def summary(
        self,
        model: str | None = None,
        target: str | None = None,
        hardware: str | None = None,
        runtime: str | None = None,
        since: datetime | None = None,
        days: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> SummaryPage:
        """One row per model x target: the latest headline figure, checks, last run (a page of them)."""
        params = {"model": model, "target": target, "hardware": hardware, "runtime": runtime, "days": days}
        params |= {"since": since.isoformat() if since else None, "limit": limit, "offset": offset}
        return self._send(_Call("GET", "/api/results/summary", SummaryPage, params=params))

    def compare(self, model: str, baseline: str = "cpu/torch") -> CompareResponse:
        """Speedup of every target of `model` over `baseline`, per scenario and shape."""
        params = {"model": model, "baseline": baseline}
        return self._send(_Call("GET", "/api/results/compare", CompareResponse, params=params))

    def history(
        self,
        model: str,
        target: str,
        metric: Metric = "p50_ms",
        days: int = 30,
        scenario: str | None = None,
        batch: int | None = None,
        seq: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> HistoryResponse:
        """`metric` over runs in time order, each point judged against the previous non-noisy one."""
        params = {"model": model, "target": target, "metric": metric, "days": days, "scenario": scenario}
        params |= {"batch": batch, "seq": seq, "limit": limit, "offset": offset}
        return self._send(_Call("GET", "/api/results/history", HistoryResponse, params=params))

    def regressions(self, run: str, baseline: str | None = None) -> RegressionsResponse:
        """The verdicts of `run` against `baseline` (default: the previous run of the same kind)."""
        params = {"run": run, "baseline": baseline}
        return self._send(_Call("GET", "/api/results/regressions", RegressionsResponse, params=params))

    def recommend(self, model: str, batch: int, seq: int, scenario: str = "forward") -> Recommendation:
        """The fastest target at that shape whose latest checks all passed."""
        params = {"model": model, "batch": batch, "seq": seq, "scenario": scenario}
        return self._send(_Call("GET", "/api/results/recommend", Recommendation, params=params))

    def export(
        self,
        format: ExportFormat = "csv",
        model: str | None = None,
        target: str | None = None,
        hardware: str | None = None,
        runtime: str | None = None,
        since: datetime | None = None,
        days: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> bytes:
        """The measurements, one row each, as a csv, parquet or json file's bytes."""
        params = {"format": format, "model": model, "target": target, "hardware": hardware, "runtime": runtime}
        params |= {"since": since.isoformat() if since else None, "days": days, "limit": limit, "offset": offset}
        return self._send(_Call("GET", "/api/results/export", params=params, raw="bytes"))

    def ingest(self, batch: RecordBatch | dict[str, Any]) -> IngestResult:
        """Apply a batch of result records (a worker's rows) to the API's results store; replays are harmless."""
        return self._send(_Call("POST", "/api/results/ingest", _model(STORAGE, "IngestResult"), body=batch))

    # -- keys: an admin key's business (api/auth.py)
    def keys(self) -> KeyList:
        """Every API key: id, name, scopes, created, expires, last used, revoked (never a secret)."""
        return self._send(_Call("GET", "/api/keys", _model(ROUTES + "keys", "KeyList")))

    def create_key(self, scopes: list[str], name: str | None = None, expires_days: float | None = None) -> CreatedKey:
        """A new key: `.key` is the whole key, answered this once."""
        body = {"scopes": scopes, "name": name, "expires_days": expires_days}
        return self._send(_Call("POST", "/api/keys", _model(ROUTES + "keys", "CreatedKey"), body=body))

    def revoke_key(self, key_id: str) -> ApiKeyRecord:
        into = _model("accel.storage.keys", "ApiKeyRecord")
        return self._send(_Call("DELETE", f"/api/keys/{_path_id(key_id)}", into))

    def run_records(self, run_id: str) -> RunFamily:
        """What the results store holds about a run: it, the runs it started, their skills, checks, measurements."""
        return self._send(_Call("GET", f"/api/results/runs/{_path_id(run_id)}", _model(STORAGE, "RunFamily")))


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Waiting:
    """What `wait` keeps between polls: its deadline, the last status read, and failures in a row."""

    MAX_FAILURES = 5  # then the API (or Prefect) is away, not blinking

    def __init__(self, run_id: str, timeout: float | None, poll_s: float, now: float):
        self.run_id, self.timeout, self.poll_s = run_id, timeout, max(poll_s, 0.01)
        self.deadline = None if timeout is None else now + timeout
        self.last: RunStatusResponse | None = None
        self.failures = 0

    def polled(self, last: RunStatusResponse, now: float) -> float:
        """Seconds to sleep before the next poll; TimeoutError once the deadline has passed."""
        self.last, self.failures = last, 0
        return self._sleep(now, self.poll_s)

    def failed(self, err: Exception, now: float) -> float:
        """Seconds to sleep after a poll failed: a request error, or one failure too many, is raised."""
        retryable = isinstance(err, ServiceUnavailableError) or (isinstance(err, AccelAPIError) and err.status == 503)
        self.failures += 1
        if not retryable or self.failures > self.MAX_FAILURES:
            raise err
        after = err.retry_after if isinstance(err, AccelAPIError) and err.retry_after else self.poll_s
        return self._sleep(now, after)

    def _sleep(self, now: float, seconds: float) -> float:
        if self.deadline is None:
            return seconds
        if now >= self.deadline:
            where = f"{self.last.status} ({self.last.state_name or self.last.state})" if self.last else "not read"
            raise TimeoutError(f"run {self.run_id} did not finish within {self.timeout:g} s: last status {where}")
        return min(seconds, self.deadline - now)


def _ws_close_error(run_id: str, code: int | None, reason: str, base_url: str) -> Exception | None:
    """The error a close code means, or None for a normal end (1000: the run reached its final state)."""
    if code in (None, 1000, 1001):
        return None
    if code == WS_RUN_NOT_FOUND:
        return AccelAPIError(404, "run_not_found", reason or f"no run {run_id}")
    if code == WS_POLICY_VIOLATION:  # the API refused the key (api/auth.py): like a 401/403 answer
        return AccelAPIError(401, "authentication", reason or "the API refused the key")
    if code is not None and 4000 <= code < 5000:
        return AccelAPIError(code - 4000, "websocket_closed", reason or f"closed with {code}")
    return _unavailable(base_url, RuntimeError(f"the run's WebSocket closed with {code} {reason}".strip()))


class AccelClient(_Endpoints):
    """The accel API, synchronously. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ):
        self.api_key = api_key if api_key is not None else _default_api_key()
        self._auth = _headers(self.api_key)  # sent with each request: a client passed in is left as it is
        if http_client is not None:
            self._http, self._owned = http_client, False
            self.base_url = (base_url or str(http_client.base_url) or _default_base_url()).rstrip("/")
        else:
            self.base_url = (base_url or _default_base_url()).rstrip("/")
            self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
            self._owned = True

    def _send(self, call: _Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers={**self._auth, **call.headers}
            )
        except httpx.TransportError as err:
            raise _unavailable(self.base_url, err) from err
        return call.read(response)

    def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 1.0) -> WorkflowResponse:
        """Poll the run until it is completed, failed (Prefect's FAILED or CRASHED: see `state`) or cancelled.

        `timeout` (seconds; None: as long as the run takes) raises TimeoutError naming the run and its last
        status. A few answers in a row from an API (or a Prefect) that is briefly away are waited out.
        """
        waiting = _Waiting(run_id, timeout, poll_s, time.monotonic())
        while True:
            try:
                last = self.workflow(run_id)
            except (AccelAPIError, ServiceUnavailableError) as err:
                time.sleep(waiting.failed(err, time.monotonic()))
                continue
            if last.status in TERMINAL_STATUSES:
                return last
            time.sleep(waiting.polled(last, time.monotonic()))

    def stream(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's WebSocket messages (snapshot first, then state/progress/result/error) until the server
        closes, which it does after the run's final state. An unknown run raises AccelAPIError 404."""
        path = f"/api/workflows/ws/{_path_id(run_id)}"
        if hasattr(self._http, "websocket_connect"):  # a starlette TestClient: the app in this process
            yield from self._stream_test_client(run_id, path)
            return
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        try:
            socket = connect(_ws_url(self.base_url, path), additional_headers=self._auth)
        except InvalidStatus as err:
            raise _api_error(
                httpx.Response(err.response.status_code, content=err.response.body, headers=dict(err.response.headers))
            ) from err
        except (OSError, TimeoutError) as err:
            raise _unavailable(self.base_url, err) from err
        with socket:
            try:
                for raw in socket:
                    message = json.loads(raw)
                    if message.get("type") != "pong":
                        yield message
            except ConnectionClosed:
                pass
            close = socket.close_code, socket.close_reason or ""
        if (error := _ws_close_error(run_id, close[0], close[1], self.base_url)) is not None:
            raise error

    def _stream_test_client(self, run_id: str, path: str) -> Iterator[dict[str, Any]]:
        from starlette.websockets import WebSocketDisconnect

        try:
            with self._http.websocket_connect(path, headers=self._auth) as socket:  # type: ignore[attr-defined]
                while True:
                    message = socket.receive_json()
                    if message.get("type") != "pong":
                        yield message
        except WebSocketDisconnect as err:
            if (error := _ws_close_error(run_id, err.code, err.reason or "", self.base_url)) is not None:
                raise error from None

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> AccelClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncAccelClient(_Endpoints):
    """The accel API, with asyncio: every endpoint method is awaited. `async with`, or `await aclose()`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ):
        self.api_key = api_key if api_key is not None else _default_api_key()
        self._auth = _headers(self.api_key)  # sent with each request: a client passed in is left as it is
        if http_client is not None:
            self._http, self._owned = http_client, False
            self.base_url = (base_url or str(http_client.base_url) or _default_base_url()).rstrip("/")
        else:
            self.base_url = (base_url or _default_base_url()).rstrip("/")
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
            self._owned = True

    async def _send(self, call: _Call) -> Any:  # type: ignore[override]
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers={**self._auth, **call.headers}
            )
        except httpx.TransportError as err:
            raise _unavailable(self.base_url, err) from err
        return call.read(response)

    async def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 1.0) -> WorkflowResponse:
        """As `AccelClient.wait`."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(run_id, timeout, poll_s, loop.time())
        while True:
            try:
                last: WorkflowResponse = await self.workflow(run_id)  # type: ignore[misc]
            except (AccelAPIError, ServiceUnavailableError) as err:
                await asyncio.sleep(waiting.failed(err, loop.time()))
                continue
            if last.status in TERMINAL_STATUSES:
                return last
            await asyncio.sleep(waiting.polled(last, loop.time()))

    async def stream(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """As `AccelClient.stream`, an async iterator."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        url = _ws_url(self.base_url, f"/api/workflows/ws/{_path_id(run_id)}")
        try:
            socket = await connect(url, additional_headers=self._auth)
        except InvalidStatus as err:
            raise _api_error(
                httpx.Response(err.response.status_code, content=err.response.body, headers=dict(err.response.headers))
            ) from err
        except (OSError, TimeoutError) as err:
            raise _unavailable(self.base_url, err) from err
        async with socket:
            try:
                async for raw in socket:
                    message = json.loads(raw)
                    if message.get("type") != "pong":
                        yield message
            except ConnectionClosed:
                pass
            close = socket.close_code, socket.close_reason or ""
        if (error := _ws_close_error(run_id, close[0], close[1], self.base_url)) is not None:
            raise error

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncAccelClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
