"""Flow runs, work pools and the WebSocket messages of a run, as the API shows them (pydantic only).

`seed_status` is the one mapping from a Prefect state type to the seed's status word; the status routes
and the WebSocket relay both use it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["initializing", "running", "completed", "failed", "cancelled"]
MessageType = Literal["snapshot", "state", "progress", "result", "error"]

FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
_STATUS_OF_STATE = {
    "RUNNING": "running",
    "CANCELLING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "cancelled",
}


def seed_status(state_type: str | None) -> Status:
    """The seed's status word of a Prefect state type.

    SCHEDULED (AwaitingRetry, Late, Resuming...), PENDING, PAUSED and no state yet are `initializing`;
    RUNNING and CANCELLING (the run still holds its process) are `running`; CRASHED is `failed`.
    """
    return _STATUS_OF_STATE.get((state_type or "").upper(), "initializing")  # type: ignore[return-value]


def is_final(state_type: str | None) -> bool:
    return (state_type or "").upper() in FINAL_STATE_TYPES


class FlowRun(BaseModel):
    """One Prefect flow run (a pipeline, a chain, a stage), with the link to it in the Prefect UI."""

    id: str
    name: str
    flow_name: str | None = None
    deployment_id: str | None = None
    work_pool_name: str | None = None
    state_type: str | None = Field(None, description="Prefect state type, e.g. RUNNING, COMPLETED.")
    state_name: str | None = Field(None, description="Prefect state name, e.g. Running, AwaitingRetry.")
    state_message: str | None = None
    state_timestamp: datetime | None = None
    created: datetime | None = None
    expected_start_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_task_run_id: str | None = None
    idempotency_key: str | None = None
    run_url: str | None = Field(None, description="The run in the Prefect UI.")
    # The id of the current state is also the id of the event that announced it: the relay dedupes on it.
    state_id: str | None = Field(None, exclude=True)

    @property
    def status(self) -> Status:
        return seed_status(self.state_type)

    @property
    def is_final(self) -> bool:
        return is_final(self.state_type)


class Worker(BaseModel):
    name: str
    status: str | None = Field(None, description="ONLINE or OFFLINE, as Prefect sees it.")
    last_heartbeat_time: datetime | None = None


class WorkPool(BaseModel):
    name: str
    type: str | None = None
    status: str | None = Field(None, description="READY, NOT_READY or PAUSED, as Prefect sees it.")
    is_paused: bool = False
    concurrency_limit: int | None = None
    workers: list[Worker] = Field(default_factory=list)


class RunSummary(BaseModel):
    """Where one run of a tree stands (in a snapshot's `descendants`)."""

    run_id: str
    stage: str | None = None
    state: str | None = None
    status: Status = "initializing"


class RunMessage(BaseModel):
    """One WebSocket message about a run (ARCHITECTURE.md "WebSocket messages").

    `stage` is the flow of the run (pipeline, chain...) in snapshot and state messages and the stage
    (generate, test, benchmark) in progress messages; `run_id` is the run the message is about: the
    watched run or one of its descendants (a chain started by a pipeline).
    """

    type: MessageType
    run_id: str | None = None
    stage: str | None = None
    state: str | None = Field(None, description="Prefect state type.")
    status: Status | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    message: str | None = None
    ts: datetime
    seq: int = 0
    state_name: str | None = None
    step: str | None = None
    model: str | None = None
    target: str | None = None
    descendants: list[RunSummary] | None = None
    results: list[dict[str, Any]] | None = Field(
        None, description="In the `result` message after the final state: each chain's outcome, from the store"
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object sent: the common fields always, the optional ones when set."""
        data = self.model_dump(mode="json")
        for key in ("state_name", "step", "model", "target", "descendants", "results"):
            if data[key] is None:
                del data[key]
        return data
