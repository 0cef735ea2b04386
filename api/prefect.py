"""Prefect's REST API, on one shared httpx client (the API process never imports `prefect`: 2.5 s).

Every call that cannot reach Prefect raises `ServiceUnavailableError` (503 in the API); a 503 from
Prefect itself (its SQLite database locked) is retried a few times first. Runs come back as
`api.schemas.runs.FlowRun`, with the flow's name resolved and the Prefect UI link.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from accel.api.schemas.runs import FlowRun, Worker, WorkPool, is_final
from accel.tasks.errors import (
    PrefectRequestError,
    RequestError,
    RunConflictError,
    RunNotFoundError,
    ServiceUnavailableError,
)

PROGRESS_EVENT = "accel.stage.progress"  # tasks/progress.py (not imported: it imports prefect)
# Prefect on SQLite answers 503 while its database is locked; Prefect's own client retries the same way.
_RETRY_503_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
MAX_CONCURRENT = 4  # calls in flight to Prefect from this API
_PAGE = 200  # Prefect's default page limit for filters
_EVENTS_PAGE = 50  # and its fixed page of /events/filter
_MAX_DEPTH = 10


def as_uuid(run_id: str) -> str:
    """The canonical form of a run id; `RunNotFoundError` for anything that is not a UUID."""
    try:
        return str(uuid.UUID(str(run_id)))
    except ValueError:
        raise RunNotFoundError(f"no run {run_id!r}: a run id is a UUID") from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:500]


class PrefectClient:
    """An async client of Prefect's REST API at `api_url` (e.g. http://127.0.0.1:4200/api)."""

    def __init__(self, api_url: str, ui_url: str | None = None):
        self.api_url = api_url.rstrip("/")
        self.ui_url = (ui_url or self.api_url.removesuffix("/api")).rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.api_url, timeout=httpx.Timeout(30.0, connect=3.0))
        # Prefect on SQLite answers a few calls at a time: 50 POSTs at once would make hundreds of calls,
        # time out there and come back as 503s. They queue here instead, MAX_CONCURRENT at a time.
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._flow_names: dict[str, str] = {}

    @property
    def events_url(self) -> str:
        """The websocket Prefect streams its events on."""
        return self.api_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/events/out"

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- transport -------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, json: Any = None, retry_transport: bool = True) -> Any:
        """The JSON answer of one call; None for 404 (callers say what was not found)."""
        attempt = 0
        while True:
            try:
                async with self._slots:
                    response = await self._http.request(method, path, json=json)
            except (httpx.RemoteProtocolError, httpx.ReadError) as err:
                # a connection the server closed (it restarted, or shed load): fresh tries when that is harmless
                if retry_transport and attempt < 3:
                    await asyncio.sleep(0.2 * attempt)
                    attempt += 1
                    continue
                raise ServiceUnavailableError(f"Prefect at {self.api_url} does not answer: {err!r}") from err
            except httpx.HTTPError as err:
                raise ServiceUnavailableError(f"Prefect at {self.api_url} does not answer: {err!r}") from err
            if response.status_code == 503 and attempt < len(_RETRY_503_DELAYS_S):
                await asyncio.sleep(_RETRY_503_DELAYS_S[attempt] * random.uniform(0.8, 1.2))  # spread retries
                attempt += 1
                continue
            if response.status_code == 404:
                return None
            if response.status_code >= 500:
                raise ServiceUnavailableError(
                    f"Prefect at {self.api_url} answered {response.status_code} to {method} {path}: {_detail(response)}"
                )
            if response.status_code >= 400:
                raise PrefectRequestError(f"Prefect refused {method} {path}: {_detail(response)}")
            return response.json() if response.content else None

    async def health(self) -> bool:
        try:
            response = await self._http.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # --- flow runs -------------------------------------------------------------------------------

    async def _flow_name(self, flow_id: str | None) -> str | None:
        if flow_id is None:
            return None
        if flow_id not in self._flow_names:
            flow = await self.request("GET", f"/flows/{flow_id}")
            if flow is None:
                return None
            self._flow_names[flow_id] = flow["name"]
        return self._flow_names[flow_id]

    async def _to_runs(self, raw: list[dict[str, Any]]) -> list[FlowRun]:
        missing = sorted({r["flow_id"] for r in raw if r.get("flow_id") and r["flow_id"] not in self._flow_names})
        if missing:
            flows = await self.request("POST", "/flows/filter", json={"flows": {"id": {"any_": missing}}})
            self._flow_names.update({f["id"]: f["name"] for f in flows or []})
        return [await self._to_run(r) for r in raw]

    async def _to_run(self, raw: dict[str, Any]) -> FlowRun:
        state = raw.get("state") or {}
        return FlowRun(
            id=raw["id"],
            name=raw["name"],
            flow_name=await self._flow_name(raw.get("flow_id")),
            deployment_id=raw.get("deployment_id"),
            work_pool_name=raw.get("work_pool_name"),
            state_type=state.get("type") or raw.get("state_type"),
            state_name=state.get("name") or raw.get("state_name"),
            state_message=state.get("message"),
            state_timestamp=state.get("timestamp"),
            state_id=state.get("id"),
            created=raw.get("created"),
            expected_start_time=raw.get("expected_start_time"),
            start_time=raw.get("start_time"),
            end_time=raw.get("end_time"),
            parameters=raw.get("parameters") or {},
            tags=raw.get("tags") or [],
            parent_task_run_id=raw.get("parent_task_run_id"),
            idempotency_key=raw.get("idempotency_key"),
            run_url=f"{self.ui_url}/runs/flow-run/{raw['id']}",
        )

    async def create_run(
        self,
        deployment: str,
        parameters: dict[str, Any],
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
    ) -> FlowRun:
        """A new run of `deployment` ("flow/deployment"); the same `idempotency_key` returns the same run."""
        flow, sep, name = deployment.partition("/")
        if not (flow and sep and name) or "/" in name:
            raise RequestError(f"deployment {deployment!r}: expected 'flow/deployment', e.g. 'pipeline/pipeline'")
        found = await self.request("GET", f"/deployments/name/{flow}/{name}")
        if found is None:
            raise ServiceUnavailableError(
                f"deployment {deployment} does not exist on {self.api_url}: start `accel up` (or `prefect deploy`)"
            )
        body: dict[str, Any] = {"parameters": parameters, "tags": tags or []}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        raw = await self.request(
            "POST", f"/deployments/{found['id']}/create_flow_run", json=body, retry_transport=bool(idempotency_key)
        )
        return await self._to_run(raw)

    async def read_run(self, run_id: str) -> FlowRun:
        raw = await self.request("GET", f"/flow_runs/{as_uuid(run_id)}")
        if raw is None:
            raise RunNotFoundError(f"no run {run_id} on Prefect at {self.api_url}")
        return await self._to_run(raw)

    async def _filter_runs(self, body: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        """Every flow run the filter matches (paged), or the first `limit` of them."""
        found: list[dict[str, Any]] = []
        offset = body.pop("offset", 0)
        while limit is None or len(found) < limit:
            page = min(_PAGE, limit - len(found)) if limit is not None else _PAGE
            batch = await self.request("POST", "/flow_runs/filter", json={**body, "limit": page, "offset": offset})
            found += batch or []
            if not batch or len(batch) < page:
                break
            offset += len(batch)
        return found

    async def descendants(self, run_id: str) -> list[FlowRun]:
        """Every flow run started under `run_id`, at any depth, oldest first.

        Children started with `run_deployment` and in-process subflows both point at a task run of
        their parent (`parent_task_run_id`); Prefect's `parent_flow_run_id` filter follows that link.
        """
        seen = {as_uuid(run_id)}
        level = [as_uuid(run_id)]
        found: list[dict[str, Any]] = []
        for _ in range(_MAX_DEPTH):
            if not level:
                break
            children = await self._filter_runs({"flow_runs": {"parent_flow_run_id": {"any_": level}}})
            level = [c["id"] for c in children if c["id"] not in seen]
            seen.update(level)
            found += [c for c in children if c["id"] in level]
        runs = await self._to_runs(found)
        return sorted(runs, key=lambda r: (r.created or datetime.min.replace(tzinfo=UTC), r.id))

    async def list_runs(self, flow_names: list[str] | None = None, limit: int = 50, offset: int = 0) -> list[FlowRun]:
        """Flow runs, newest first (by start time, or expected start for runs not started yet)."""
        body: dict[str, Any] = {"sort": "START_TIME_DESC", "offset": max(offset, 0)}
        if flow_names:
            body["flows"] = {"name": {"any_": list(flow_names)}}
        return await self._to_runs(await self._filter_runs(body, limit=max(limit, 0)))

    async def set_state(
        self, run_id: str, state_type: str, message: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Prefect's orchestration result ({status, state, details}) of proposing a state."""
        body = {"state": {"type": state_type, "message": message}, "force": force}
        result = await self.request("POST", f"/flow_runs/{as_uuid(run_id)}/set_state", json=body)
        if result is None:
            raise RunNotFoundError(f"no run {run_id} on Prefect at {self.api_url}")
        return result

    async def cancel(self, run_id: str) -> list[str]:
        """Cancel the run and every descendant that has not ended; the ids it cancelled, the run first.

        Prefect cancels subflows only once their parent is Cancelled (its cleanup service, later);
        children started with `run_deployment` run in processes of their own, so each one is told here.
        A run that has not started goes straight to Cancelled (Prefect's own rule); one that runs goes to
        Cancelling, and its worker stops it.
        """
        run = await self.read_run(run_id)
        if run.is_final:
            raise RunConflictError(f"run {run.id} already ended {run.state_name}")
        targets = [run] + [d for d in await self.descendants(run.id) if not d.is_final]
        cancelled = []
        for target in targets:
            message = "cancelled through the accel API" if target is run else f"its parent run {run.id} was cancelled"
            result = await self.set_state(target.id, "CANCELLING", message)
            if result.get("status") != "ACCEPT" and (result.get("state") or {}).get("type") != "CANCELLED":
                if is_final((result.get("state") or {}).get("type")):
                    continue  # it ended meanwhile
                result = await self.set_state(target.id, "CANCELLING", message, force=True)
            cancelled.append(target.id)
        return cancelled

    # --- work pools ------------------------------------------------------------------------------

    async def work_pool(self, name: str) -> WorkPool | None:
        """One work pool with its workers (None when it does not exist), live from Prefect."""
        pool = await self.request("GET", f"/work_pools/{name}")
        return None if pool is None else (await self._pools([pool]))[0]

    async def work_pools(self) -> list[WorkPool]:
        """Every work pool with its workers, live from Prefect."""
        return await self._pools(await self.request("POST", "/work_pools/filter", json={}) or [])

    async def _pools(self, pools: list[dict[str, Any]]) -> list[WorkPool]:
        workers = await asyncio.gather(
            *(self.request("POST", f"/work_pools/{p['name']}/workers/filter", json={}) for p in pools)
        )
        return [
            WorkPool(
                name=p["name"],
                type=p.get("type"),
                status=p.get("status"),
                is_paused=bool(p.get("is_paused")),
                concurrency_limit=p.get("concurrency_limit"),
                workers=[
                    Worker(name=w["name"], status=w.get("status"), last_heartbeat_time=w.get("last_heartbeat_time"))
                    for w in ws or []
                ],
            )
            for p, ws in zip(pools, workers, strict=True)
        ]

    # --- events ----------------------------------------------------------------------------------

    async def progress_events(
        self, run_ids: list[str], limit: int = 200, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The latest `limit` progress events of those runs, oldest first: {id, occurred, run_id, payload}."""
        if not run_ids or limit <= 0:
            return []
        since = since or datetime.now(UTC) - timedelta(days=30)
        body = {
            "filter": {
                "event": {"name": [PROGRESS_EVENT]},
                "resource": {"id": [f"prefect.flow-run.{as_uuid(r)}" for r in run_ids]},
                "occurred": {"since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
                "order": "DESC",
            },
            "limit": min(limit, _EVENTS_PAGE),
        }
        page = await self.request("POST", "/events/filter", json=body) or {}
        events = list(page.get("events") or [])
        while page.get("next_page") and len(events) < limit:
            page = await self.request("GET", str(page["next_page"])) or {}
            events += page.get("events") or []
        events = events[:limit]
        events.reverse()
        return [
            {
                "id": e["id"],
                "occurred": e["occurred"],
                "run_id": e["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run."),
                "payload": e.get("payload") or {},
            }
            for e in events
        ]
