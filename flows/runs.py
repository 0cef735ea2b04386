"""Every flow is a `run` row in the results store, keyed by its Prefect flow-run id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.runtime import flow_run

from accel.storage import HttpResultsStore
from accel.tasks.results_store import AnyResultsStore, open_results_store
from accel.tasks.stage_run import start_run


class RunHandle:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.status = "completed"
        self.message: str | None = None

    def fail(self, message: str) -> None:
        self.status, self.message = "failed", message


def store() -> AnyResultsStore:
    """The results store of this process's settings (the DuckDB file, or the accel API's)."""
    return open_results_store()


@contextmanager
def recorded_run(
    kind: str, params: dict[str, Any], parent_run_id: str | None = None, trigger: str | None = None
) -> Iterator[RunHandle]:
    """Record this flow run as running now, and as completed or failed (with the reason) when it ends."""
    run_id = str(flow_run.id) if flow_run.id else str(uuid.uuid4())
    parent = parent_run_id or (str(flow_run.parent_flow_run_id) if flow_run.parent_flow_run_id else None)
    results = store()
    start_run(results, run_id, kind, params, trigger, parent)
    handle = RunHandle(run_id)
    try:
        yield handle
    except BaseException as err:
        results.finish_run(run_id, "failed", f"{type(err).__name__}: {err}"[:2000])
        raise
    results.finish_run(run_id, handle.status, handle.message)


# Prefect's final state types -> the run status recorded for them.
_FINAL_STATUS = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled", "CRASHED": "crashed"}
# Rows only flows create: when Prefect has no flow run for one, the run is gone (its server was reset).
_FLOW_ONLY_KINDS = ("pipeline", "chain", "nightly")


def record_final_state(run_id: str, state: Any, results: AnyResultsStore | None = None) -> bool:
    """Close the row of a flow run that ended without closing it itself (Crashed, Cancelled, killed).

    A row the flow already closed is left as the flow wrote it. True when the row was changed.
    """
    status = _FINAL_STATUS.get(str(getattr(state, "type", "")).rsplit(".", 1)[-1].upper())
    if status is None:
        return False
    results = results or store()
    row = results.get_run(run_id)
    if row is None or row.status not in ("initializing", "running"):
        return False
    message = f"Prefect: {state.name}" + (f": {state.message}" if getattr(state, "message", None) else "")
    results.finish_run(run_id, status, message[:2000], finished_at=getattr(state, "timestamp", None))
    return True


def reconcile_runs(results: AnyResultsStore | None = None, older_than_s: float = 60.0) -> list[str]:
    """Bring rows still `running` in line with Prefect: a flow run that is final, or gone, is recorded so.

    Called by whoever waits on runs (the pipeline) and before runs are read; the run ids it changed.
    Through the accel API's store the open rows are listed (at most 1000 of each status) and filtered here.
    """
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    results = results or store()
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    if isinstance(results, HttpResultsStore):  # no SQL over HTTP: the open rows, filtered here
        rows = [
            {"run_id": r.run_id, "kind": r.kind, "started_at": r.started_at}
            for status in ("initializing", "running")
            for r in results.list_runs(status=status, limit=1000)
            if r.started_at is not None and r.started_at < cutoff
        ]
    else:
        rows = results.query(
            "SELECT run_id, kind, started_at FROM runs WHERE status IN ('initializing', 'running') AND started_at < ?",
            [cutoff],
        )
    changed: list[str] = []
    if not rows:
        return changed
    with get_client(sync_client=True) as client:
        for row in rows:
            try:
                found = client.read_flow_run(uuid.UUID(row["run_id"]))
            except ObjectNotFound:
                if row["kind"] in _FLOW_ONLY_KINDS:
                    results.finish_run(row["run_id"], "crashed", "Prefect has no record of this flow run any more")
                    changed.append(row["run_id"])
                continue
            except Exception:  # not a flow-run id (a stage run started from the CLI), or Prefect is down
                continue
            if (
                found.state is not None
                and found.state.is_final()
                and record_final_state(row["run_id"], found.state, results)
            ):
                changed.append(row["run_id"])
    return changed
