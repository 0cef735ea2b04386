"""The WebSocket relay: Prefect's events of one run (and of the runs it started) to every client watching it.

One upstream subscription per watched run, on Prefect's raw `/events/out` websocket (no `import
prefect`), shared by all its clients through per-client queues; it stops when the last client leaves.
A run's tree grows while it runs (a pipeline starts chains), and Prefect's events of a child name only
the child and its parent *task* run, so the upstream takes every flow-run state and progress event and
keeps those of the tree, resolving a run it has not seen before through REST once.

Prefect restarting closes the socket (1012): the upstream reconnects with backoff, asks for a backfill
from the last event it saw and re-reads the tree's states over REST, so nothing is lost; every message
is deduplicated on the event id (a state's event id is the state's id, so REST and events agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from accel.api.prefect import PROGRESS_EVENT, PrefectClient
from accel.api.schemas.runs import FlowRun, RunMessage, RunSummary, is_final, seed_status
from accel.tasks.errors import RunNotFoundError, ServiceUnavailableError

log = logging.getLogger("accel.api.relay")

CLOSE_NOT_FOUND = 4404
CLOSE_TRY_AGAIN = 1013
_CONNECT_WAIT_S = 5.0  # how long a new client waits for the upstream before reading its snapshot anyway
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)
_SEEN_IDS = 20_000
_FAR_FUTURE = "2100-01-01T00:00:00+00:00"  # Prefect's default `until` is "now": no live events without it
_IGNORED_EVENTS = ["prefect.flow-run.heartbeat", "prefect.flow-run.pull-step.executed"]
CLOSE_SHUTDOWN = 1012
_PONG = object()
_GONE = object()  # the client left
_SHUTDOWN = object()  # the API stops


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass
class _Update:
    """A message for the clients, with what each needs to drop one it already knows (its snapshot)."""

    message: RunMessage
    state_ts: datetime | None = None


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    state_ts: dict[str, datetime] = field(default_factory=dict)


def _state_message(run: FlowRun) -> RunMessage:
    return RunMessage(
        type="state",
        run_id=run.id,
        stage=run.flow_name,
        state=run.state_type,
        status=seed_status(run.state_type),
        progress=1.0 if run.state_type == "COMPLETED" else None,
        message=run.state_message,
        state_name=run.state_name,
        ts=run.state_timestamp or _now(),
    )


class _Upstream:
    """The one Prefect subscription of a watched run, and the tree of runs under it."""

    def __init__(self, prefect: PrefectClient, root: str):
        self.prefect = prefect
        self.root = root
        self.clients: set[_Client] = set()
        self.members: dict[str, str | None] = {root: None}  # run id -> flow name
        self.outsiders: set[str] = set()
        self.connections = 0  # subscriptions opened so far (1 + reconnects)
        self.connected = asyncio.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._state_ts: dict[str, datetime] = {}
        self._started = _now()
        self._last_occurred: datetime | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-upstream-{self.root}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # --- the subscription ------------------------------------------------------------------------

    def _filter(self, backfill: bool) -> dict[str, Any]:
        since = (self._last_occurred or self._started) - timedelta(seconds=2) if backfill else _now()
        return {
            "type": "filter",
            "backfill": backfill,
            "filter": {
                "event": {"prefix": ["prefect.flow-run.", "accel.stage."], "exclude_name": _IGNORED_EVENTS},
                "occurred": {"since": since.isoformat(), "until": _FAR_FUTURE},
            },
        }

    async def _run(self) -> None:
        failures = 0
        while True:
            reconnect = self.connections > 0 or failures > 0
            try:
                async with connect(
                    self.prefect.events_url, subprotocols=[Subprotocol("prefect")], open_timeout=5, proxy=None
                ) as ws:
                    await ws.send(json.dumps({"type": "auth", "token": None}))
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if answer.get("type") != "auth_success":
                        raise ConnectionError(f"Prefect refused the events subscription: {answer}")
                    await ws.send(json.dumps(self._filter(backfill=reconnect)))
                    self.connections += 1
                    await self._catch_up(reconnect)  # after subscribing, so nothing falls in between
                    self.connected.set()
                    failures = 0
                    async for raw in ws:
                        await self._handle(json.loads(raw))
                log.info("Prefect closed the events subscription of run %s: reconnecting", self.root)
            except asyncio.CancelledError:
                raise
            except (OSError, websockets.WebSocketException, ServiceUnavailableError) as err:  # (TimeoutError too)
                log.info("events subscription of run %s lost (%r): reconnecting", self.root, err)
            except Exception:  # a bug must not end the relay of a run that others watch
                log.exception("events subscription of run %s failed: reconnecting", self.root)
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1

    async def _catch_up(self, reconnect: bool) -> None:
        """Learn the tree as it is now; after a reconnect also relay the states missed meanwhile."""
        runs = [await self.prefect.read_run(self.root)] if reconnect else []
        runs += await self.prefect.descendants(self.root)
        for run in runs:
            self.members[run.id] = run.flow_name
            if reconnect and run.state_id and self._new_state(run.id, run.state_timestamp, run.state_id):
                self._broadcast(_Update(_state_message(run), run.state_timestamp))

    # --- events ----------------------------------------------------------------------------------

    def _first_time(self, event_id: str | None) -> bool:
        if event_id is None:
            return True
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    def _new_state(self, run_id: str, ts: datetime | None, event_id: str | None) -> bool:
        """True for a state not relayed yet and newer than the last one relayed for that run."""
        if not self._first_time(event_id):
            return False
        if ts is not None:
            if run_id in self._state_ts and ts <= self._state_ts[run_id]:
                return False
            self._state_ts[run_id] = ts
        return True

    async def _handle(self, message: dict[str, Any]) -> None:
        if message.get("type") != "event":
            return
        event = message["event"]
        resource = event.get("resource") or {}
        resource_id = str(resource.get("prefect.resource.id", ""))
        if not resource_id.startswith("prefect.flow-run."):
            return
        run_id = resource_id.removeprefix("prefect.flow-run.")
        is_state = "prefect.state-type" in resource
        if event.get("event") != PROGRESS_EVENT and not is_state:
            return
        if not await self._in_tree(run_id, event, is_state):
            return
        occurred = _ts(event.get("occurred")) or _now()
        if is_state:
            ts = _ts(resource.get("prefect.state-timestamp")) or occurred
            if not self._new_state(run_id, ts, event.get("id")):
                return
            state_type = resource["prefect.state-type"]
            validated = (event.get("payload") or {}).get("validated_state") or {}
            update = _Update(
                RunMessage(
                    type="state",
                    run_id=run_id,
                    stage=self.members.get(run_id),
                    state=state_type,
                    status=seed_status(state_type),
                    progress=1.0 if state_type == "COMPLETED" else None,
                    message=validated.get("message") or None,
                    state_name=resource.get("prefect.state-name"),
                    ts=occurred,
                ),
                ts,
            )
        else:
            if not self._first_time(event.get("id")):
                return
            payload = event.get("payload") or {}
            update = _Update(
                RunMessage(
                    type="progress",
                    run_id=run_id,
                    stage=payload.get("stage"),
                    state="RUNNING",
                    status="running",
                    progress=min(max(float(payload.get("progress") or 0.0), 0.0), 1.0),
                    message=payload.get("step"),
                    step=payload.get("step"),
                    model=payload.get("model"),
                    target=payload.get("target"),
                    ts=occurred,
                )
            )
        self._last_occurred = max(self._last_occurred or occurred, occurred)
        self._broadcast(update)

    async def _in_tree(self, run_id: str, event: dict[str, Any], is_state: bool) -> bool:
        """Whether the run is the watched run or one it started (its ancestry read once over REST)."""
        if run_id in self.members:
            if self.members[run_id] is None:
                self.members[run_id] = _related(event, "flow")
            return True
        if run_id in self.outsiders:
            return False
        parent_task = _related(event, "task-run", field="prefect.resource.id")
        if parent_task is None and is_state:  # a state event of a subflow always names its parent task run
            self.outsiders.add(run_id)
            return False
        chain = [run_id]
        current: str | None = run_id
        parent_task = parent_task.removeprefix("prefect.task-run.") if parent_task else None
        for _ in range(10):
            if parent_task is None:
                run = await self.prefect.request("GET", f"/flow_runs/{current}")
                parent_task = (run or {}).get("parent_task_run_id")
                if parent_task is None:
                    break
            task_run = await self.prefect.request("GET", f"/task_runs/{parent_task}")
            current = (task_run or {}).get("flow_run_id")
            parent_task = None
            if current is None or current in self.outsiders:
                break
            if current in self.members:
                self.members.update({r: None for r in chain})
                self.members[run_id] = _related(event, "flow")
                return True
            chain.append(current)
        self.outsiders.update(chain)
        return False

    def _broadcast(self, update: _Update) -> None:
        for client in self.clients:
            client.queue.put_nowait(update)


def _related(event: dict[str, Any], role: str, field: str = "prefect.resource.name") -> str | None:
    for related in event.get("related") or []:
        if related.get("prefect.resource.role") == role:
            return related.get(field)
    return None


class RunRelay:
    """Relays the events of runs to WebSocket clients; one Prefect subscription per watched run."""

    def __init__(self, prefect: PrefectClient, results: Callable[[str], list[dict[str, Any]]] | None = None):
        """`results(run_id)`: what the run recorded (its chains' outcomes), sent as the `result` message after
        the run's final state; called in a thread (it reads the results store)."""
        self.prefect = prefect
        self.results = results
        self._upstreams: dict[str, _Upstream] = {}

    @property
    def upstream_count(self) -> int:
        """How many Prefect subscriptions are open (one per watched run, whatever its clients)."""
        return len(self._upstreams)

    def upstream(self, run_id: str) -> _Upstream | None:
        return self._upstreams.get(run_id)

    async def aclose(self) -> None:
        """Stop every subscription; clients still connected are closed with 1012 (service restart)."""
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        for upstream in upstreams:
            for client in upstream.clients:
                client.queue.put_nowait(_SHUTDOWN)
            await upstream.stop()

    def _join(self, run_id: str, client: _Client) -> _Upstream:
        upstream = self._upstreams.get(run_id)
        if upstream is None:
            upstream = self._upstreams[run_id] = _Upstream(self.prefect, run_id)
            upstream.start()
        upstream.clients.add(client)
        return upstream

    async def _leave(self, upstream: _Upstream, client: _Client) -> None:
        upstream.clients.discard(client)
        if not upstream.clients and self._upstreams.get(upstream.root) is upstream:
            del self._upstreams[upstream.root]
            await upstream.stop()

    async def _snapshot(self, run: FlowRun, client: _Client) -> RunMessage:
        """Where the run and its tree stand now, from REST; the client then skips what this covers."""
        descendants = await self.prefect.descendants(run.id)
        progress = await self.prefect.progress_events([run.id] + [d.id for d in descendants], limit=1)
        for r in [run, *descendants]:
            if r.state_timestamp is not None:
                client.state_ts[r.id] = r.state_timestamp
        latest = progress[-1]["payload"] if progress else {}
        value = 1.0 if run.state_type == "COMPLETED" else latest.get("progress")
        return RunMessage(
            type="snapshot",
            run_id=run.id,
            stage=run.flow_name,
            state=run.state_type,
            status=seed_status(run.state_type),
            progress=min(max(float(value), 0.0), 1.0) if value is not None else None,
            message=run.state_message,
            state_name=run.state_name,
            step=latest.get("step"),
            ts=run.state_timestamp or _now(),
            descendants=[
                RunSummary(run_id=d.id, stage=d.flow_name, state=d.state_type, status=seed_status(d.state_type))
                for d in descendants
            ],
        )

    async def _finish(self, run_id: str, final: RunMessage, send: Callable, websocket: WebSocket) -> None:
        """After the final state: the `result` message (when the run recorded any), then close 1000."""
        if self.results is not None:
            try:
                rows = await asyncio.to_thread(self.results, run_id)
            except Exception as err:  # the store busy or away: the state already said how the run ended
                log.warning("no result message for run %s: %s", run_id, err)
                rows = []
            if rows:
                await send(
                    RunMessage(
                        type="result",
                        run_id=run_id,
                        stage=final.stage,
                        state=final.state,
                        status=final.status,
                        message=final.message,
                        results=rows,
                        ts=_now(),
                    )
                )
        await websocket.close(1000)

    async def serve_socket(self, websocket: WebSocket, run_id: str) -> None:
        """Serve one client watching `run_id` until the run ends (close 1000) or the client leaves."""
        if websocket.client_state == WebSocketState.CONNECTING:  # api/auth.py accepted it for a message auth
            await websocket.accept()
        seq = 0

        async def send(message: RunMessage) -> None:
            nonlocal seq
            seq += 1
            message.seq = seq
            await websocket.send_json(message.wire())

        async def fail(code: int, err: Exception) -> None:
            await send(RunMessage(type="error", run_id=run_id, message=str(err), ts=_now()))
            await websocket.close(code, reason=str(err)[:120])

        try:
            run = await self.prefect.read_run(run_id)
        except RunNotFoundError as err:
            return await fail(CLOSE_NOT_FOUND, err)
        except ServiceUnavailableError as err:
            return await fail(CLOSE_TRY_AGAIN, err)

        client = _Client()
        upstream = self._join(run.id, client)
        listener = asyncio.create_task(_listen(websocket, client.queue))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(upstream.connected.wait(), _CONNECT_WAIT_S)
            try:
                run = await self.prefect.read_run(run.id)
                snapshot = await self._snapshot(run, client)
            except ServiceUnavailableError as err:
                return await fail(CLOSE_TRY_AGAIN, err)
            upstream.members[run.id] = run.flow_name
            await send(snapshot)
            if run.is_final:
                await send(_state_message(run))
                return await self._finish(run.id, _state_message(run), send, websocket)
            while True:
                item = await client.queue.get()
                if item is _GONE:
                    return
                if item is _SHUTDOWN:
                    return await websocket.close(CLOSE_SHUTDOWN, reason="the accel API is stopping")
                if item is _PONG:
                    await websocket.send_json({"type": "pong"})
                    continue
                message = item.message.model_copy()
                if item.state_ts is not None:
                    known = client.state_ts.get(message.run_id)
                    if known is not None and item.state_ts <= known:
                        continue  # the snapshot already said so
                    client.state_ts[message.run_id] = item.state_ts
                if message.stage is None and message.type == "state":
                    message.stage = upstream.members.get(message.run_id)
                await send(message)
                if message.type == "state" and message.run_id == run.id and is_final(message.state):
                    return await self._finish(run.id, message, send, websocket)
        except (WebSocketDisconnect, websockets.WebSocketException, RuntimeError, OSError) as err:
            if websocket.client_state != WebSocketState.DISCONNECTED:
                log.info("client of run %s went away: %r", run_id, err)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            await self._leave(upstream, client)


async def _listen(websocket: WebSocket, queue: asyncio.Queue) -> None:
    """The client's side: `ping` (or {"type": "ping"}) is answered with a pong; leaving ends the relay."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
            text = text.strip()
            if text == "ping":
                queue.put_nowait(_PONG)
                continue
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(text).get("type") == "ping":
                    queue.put_nowait(_PONG)
    except Exception:  # the socket closed under us: the same as leaving
        pass
    finally:
        queue.put_nowait(_GONE)
