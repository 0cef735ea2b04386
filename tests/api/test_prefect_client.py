"""The Prefect REST client of the API against a real Prefect server (the session's harness)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from accel.api.prefect import PROGRESS_EVENT, PrefectClient
from accel.tasks.errors import RunConflictError, RunNotFoundError, ServiceUnavailableError
from tests.prefect_http import async_prefect_http


class PrefectRest:
    """Plain REST calls the tests make to set a scene up: flows, runs (deployment-less), states, events."""

    def __init__(self, api_url: str):
        self.http = async_prefect_http(api_url)  # retries Prefect's 503s (a locked SQLite) as Prefect's client does

    async def call(self, method: str, path: str, json=None):
        response = await self.http.request(method, path, json=json)
        response.raise_for_status()
        return response.json() if response.content else None

    async def flow(self, name: str) -> str:
        return (await self.call("POST", "/flows/", {"name": name}))["id"]

    async def run(self, flow_name: str, parent_run: str | None = None, state: str = "PENDING", **extra) -> str:
        body = {"flow_id": await self.flow(flow_name), "state": {"type": state}, **extra}
        if parent_run is not None:  # how Prefect links a subflow (or a run_deployment child): a task run of the parent
            task = await self.call(
                "POST",
                "/task_runs/",
                {"flow_run_id": parent_run, "task_key": f"child-{uuid.uuid4()}", "dynamic_key": "0", "name": "child"},
            )
            body["parent_task_run_id"] = task["id"]
        return (await self.call("POST", "/flow_runs/", body))["id"]

    async def set_state(self, run_id: str, state_type: str, message: str | None = None) -> None:
        await self.call(
            "POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": state_type, "message": message}, "force": True}
        )

    async def progress(self, run_id: str, stage: str, step: str, progress: float) -> str:
        """The event tasks/progress.py emits, sent the way Prefect's own client would (POST /events)."""
        event_id = str(uuid.uuid4())
        event = {
            "id": event_id,
            "occurred": datetime.now(UTC).isoformat(),
            "event": PROGRESS_EVENT,
            "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}", "accel.stage": stage},
            "payload": {"run_id": run_id, "stage": stage, "step": step, "progress": progress, "model": "m"},
        }
        await self.call("POST", "/events", [event])
        return event_id

    async def aclose(self) -> None:
        await self.http.aclose()


def run_async(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_read_run_describes_a_flow_run_with_its_ui_link(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            run_id = await rest.run("accel-client-read", tags=["t1"], parameters={"x": 1})
            run = await client.read_run(run_id)
            assert (run.id, run.flow_name, run.state_type, run.state_name) == (
                run_id,
                "accel-client-read",
                "PENDING",
                "Pending",
            )
            assert run.parameters == {"x": 1} and run.tags == ["t1"] and run.status == "initializing"
            assert run.run_url == f"{prefect_api.removesuffix('/api')}/runs/flow-run/{run_id}"
            assert "state_id" not in run.model_dump()
            assert await client.health() is True
            for missing in (str(uuid.uuid4()), "not-a-run"):
                with pytest.raises(RunNotFoundError):
                    await client.read_run(missing)
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_descendants_follow_subflows_at_every_depth_oldest_first(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            root = await rest.run("accel-client-pipeline")
            first = await rest.run("accel-client-chain", parent_run=root)
            second = await rest.run("accel-client-chain", parent_run=root)
            grandchild = await rest.run("accel-client-stage", parent_run=first)
            await rest.run("accel-client-chain")  # unrelated
            found = await client.descendants(root)
            assert [r.id for r in found] == [first, second, grandchild]
            assert [r.flow_name for r in found] == ["accel-client-chain", "accel-client-chain", "accel-client-stage"]
            assert await client.descendants(grandchild) == []

            listed = await client.list_runs(["accel-client-pipeline", "accel-client-stage"], limit=10, offset=0)
            assert {r.id for r in listed} >= {root, grandchild}
            assert {r.flow_name for r in listed} <= {"accel-client-pipeline", "accel-client-stage"}
            assert len(await client.list_runs(None, limit=2, offset=0)) == 2
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_cancel_cascades_to_children_and_refuses_a_run_that_ended(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            root = await rest.run("accel-client-pipeline", state="RUNNING")
            running = await rest.run("accel-client-chain", parent_run=root, state="RUNNING")
            waiting = await rest.run("accel-client-chain", parent_run=root, state="SCHEDULED")
            done = await rest.run("accel-client-chain", parent_run=root, state="COMPLETED")
            cancelled = await client.cancel(root)
            assert cancelled == [root, running, waiting]
            assert (await client.read_run(root)).state_type == "CANCELLING"
            assert (await client.read_run(running)).state_type == "CANCELLING"
            assert (await client.read_run(waiting)).state_type == "CANCELLED"  # nothing started: Prefect ends it
            assert (await client.read_run(done)).state_type == "COMPLETED"
            with pytest.raises(RunConflictError, match="already ended Completed") as raised:
                await client.cancel(done)
            assert raised.value.status_code == 409
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_create_run_is_idempotent_and_names_a_missing_deployment(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            flow_id = await rest.flow("accel-client-deployed")
            await rest.call("POST", "/deployments/", {"name": "cpu", "flow_id": flow_id})
            key = f"request-{uuid.uuid4()}"
            first = await client.create_run("accel-client-deployed/cpu", {"x": 1}, idempotency_key=key, tags=["api"])
            again = await client.create_run("accel-client-deployed/cpu", {"x": 1}, idempotency_key=key, tags=["api"])
            other = await client.create_run("accel-client-deployed/cpu", {"x": 1})
            assert first.id == again.id != other.id
            assert first.idempotency_key == key and "api" in first.tags and first.deployment_id
            assert first.flow_name == "accel-client-deployed" and first.state_type == "SCHEDULED"
            with pytest.raises(ServiceUnavailableError, match=r"never-deployed/anywhere does not exist.*accel up"):
                await client.create_run("never-deployed/anywhere", {})
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_work_pools_list_their_workers_live(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            await rest.call("POST", "/work_pools/", {"name": "accel-test-pool", "type": "process"})
            await rest.call("POST", "/work_pools/accel-test-pool/workers/heartbeat", {"name": "worker-1"})
            pools = {p.name: p for p in await client.work_pools()}
            pool = pools["accel-test-pool"]
            assert pool.type == "process"
            assert [(w.name, w.status) for w in pool.workers] == [("worker-1", "ONLINE")]
            assert pool.workers[0].last_heartbeat_time is not None
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_progress_events_of_runs_oldest_first(prefect_api):
    async def body():
        rest, client = PrefectRest(prefect_api), PrefectClient(prefect_api)
        try:
            root = await rest.run("accel-client-pipeline", state="RUNNING")
            child = await rest.run("accel-client-chain", parent_run=root, state="RUNNING")
            sent = [
                await rest.progress(root, "resolve", "model", 0.5),
                await rest.progress(child, "generate", "export", 0.25),
                await rest.progress(child, "generate", "export", 1.0),
            ]
            deadline = time.monotonic() + 30
            while True:  # Prefect stores events in batches (about every second)
                found = await client.progress_events([root, child])
                if len(found) == 3 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert [e["id"] for e in found] == sent
            assert [e["run_id"] for e in found] == [root, child, child]
            assert found[1]["payload"]["stage"] == "generate" and found[2]["payload"]["progress"] == 1.0
            assert [e["id"] for e in await client.progress_events([root, child], limit=1)] == sent[-1:]

            many = [await rest.progress(root, "benchmark", f"point {i}", i / 60) for i in range(60)]
            while True:  # past Prefect's page of 50: the next pages are followed
                found = await client.progress_events([root], limit=61)
                if len(found) == 61 or time.monotonic() > deadline + 30:
                    break
                await asyncio.sleep(0.5)
            assert [e["id"] for e in found] == [sent[0], *many]
        finally:
            await rest.aclose()
            await client.aclose()

    run_async(body())


def test_a_dead_prefect_is_a_service_unavailable_error():
    async def body():
        client = PrefectClient("http://127.0.0.1:9/api")
        try:
            assert await client.health() is False
            with pytest.raises(ServiceUnavailableError, match=r"Prefect at http://127.0.0.1:9/api does not answer"):
                await client.read_run(str(uuid.uuid4()))
            with pytest.raises(ServiceUnavailableError):
                await client.work_pools()
        finally:
            await client.aclose()

    run_async(body())
