"""Progress of a stage as Prefect events (`accel.stage.progress`), for the API to relay to WebSockets.

In-process listeners (the `accel run` progress bar) get the same payloads without a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

PROGRESS_EVENT = "accel.stage.progress"
_listeners: list[Callable[[dict[str, Any]], None]] = []
_MIN_INTERVAL_S = 0.25


def add_listener(listener: Callable[[dict[str, Any]], None]) -> None:
    _listeners.append(listener)


def remove_listener(listener: Callable[[dict[str, Any]], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def emit_progress(stage: str, step: str, progress: float, **extra: Any) -> None:
    run_id = str(flow_run.id) if flow_run.id else None
    payload = {
        "run_id": run_id,
        "stage": stage,
        "step": step,
        "progress": round(min(max(progress, 0.0), 1.0), 4),
        **extra,
    }
    for listener in list(_listeners):
        listener(payload)
    if run_id is not None:
        emit_event(
            event=PROGRESS_EVENT,
            resource={"prefect.resource.id": f"prefect.flow-run.{run_id}", "accel.stage": stage},
            payload=payload,
        )


def stage_progress(stage: str, **extra: Any) -> Callable[[str, float], None]:
    """A progress callback for one stage that emits at most every 0.25 s (always the first and last)."""
    last = [0.0]

    def report(step: str, progress: float) -> None:
        now = time.monotonic()
        if progress in (0.0, 1.0) or now - last[0] >= _MIN_INTERVAL_S:
            last[0] = now
            emit_progress(stage, step, progress, **extra)

    return report
