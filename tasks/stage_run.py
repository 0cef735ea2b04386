"""The run row a stage (test, benchmark) records when called on its own, and the skill it works on.

Inside a flow the flow's run owns the row; called alone (the CLI), the stage records one of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accel.storage import RunRecord
from accel.tasks.environment import record_this_environment
from accel.tasks.generated import GeneratedSkill, record_skill
from accel.tasks.results_store import AnyResultsStore, open_results_store


@dataclass
class StageRun:
    run_id: str
    store: AnyResultsStore | None
    own: bool

    def finish(self, ok: bool, message: str) -> None:
        if self.store is not None and self.own:
            self.store.finish_run(self.run_id, "completed" if ok else "failed", message)


def start_run(
    store: AnyResultsStore,
    run_id: str,
    kind: str,
    params: dict[str, Any],
    trigger: str | None,
    parent_run_id: str | None = None,
) -> None:
    """Record a `kind` run as running now, on this machine's environment (finish it with store.finish_run)."""
    store.record_run(
        RunRecord(
            run_id=run_id,
            kind=kind,
            status="running",
            params=params,
            parent_run_id=parent_run_id,
            trigger=trigger,
            environment_id=record_this_environment(store),
        )
    )


def open_stage_run(
    kind: str,
    skill_dir: Path,
    manifest: dict[str, Any],
    params: dict[str, Any],
    run_id: str | None,
    trigger: str,
    record: bool,
) -> StageRun:
    """Record the skill, and a `kind` run unless `run_id` names the caller's; nothing when not `record`."""
    if not record:
        return StageRun(run_id=run_id or str(uuid.uuid4()), store=None, own=False)
    store = open_results_store()
    record_skill(
        GeneratedSkill(skill_id=manifest["skill_id"], path=skill_dir, reused=True, seconds=0.0, manifest=manifest),
        store,
    )
    if run_id is not None:
        return StageRun(run_id=run_id, store=store, own=False)
    stage = StageRun(run_id=str(uuid.uuid4()), store=store, own=True)
    params = {"skill_id": manifest["skill_id"], "target": manifest["target"]["target"], **params}
    start_run(store, stage.run_id, kind, params, trigger)
    return stage
