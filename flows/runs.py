"""Every flow is a `run` row in the results store, keyed by its Prefect flow-run id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.runtime import flow_run

from accel.settings import get_settings
from accel.storage import ResultsStore
from accel.tasks.stage_run import start_run


class RunHandle:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.status = "completed"
        self.message: str | None = None

    def fail(self, message: str) -> None:
        self.status, self.message = "failed", message


def store() -> ResultsStore:
    settings = get_settings()
    return ResultsStore(settings.results_path, settings.db_timeout_s)


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
