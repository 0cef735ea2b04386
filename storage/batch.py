"""What travels between a results store client and the store: a batch of rows, and a run with its rows.

`RecordBatch` is one write: rows upserted on their natural keys, then runs closed (`finished`), all in
one transaction, so applying a batch twice leaves the store as applying it once. `RunFamily` is what a
reader of one run needs: the run, the runs it started, and their skills, checks and measurements.
Both use the record models of `records.py`, so a row is validated the same way on either side.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from accel.storage.records import (
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    RunRecord,
    RunStatus,
    SkillRecord,
)


class RunFinish(BaseModel):
    """`finish_run` as data: the run's final status, its reason, and when it ended (set by the writer)."""

    run_id: str
    status: RunStatus
    message: str | None = None
    finished_at: datetime | None = None


class RecordBatch(BaseModel):
    """Rows to upsert, table by table, then runs to close; applied as one transaction."""

    model_config = ConfigDict(extra="forbid")  # a key the API does not know is refused, never dropped

    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    environments: list[EnvironmentRecord] = Field(default_factory=list)
    runs: list[RunRecord] = Field(default_factory=list)
    skills: list[SkillRecord] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)
    measurements: list[MeasurementRecord] = Field(default_factory=list)
    finished: list[RunFinish] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "environments": len(self.environments),
            "runs": len(self.runs),
            "skills": len(self.skills),
            "checks": len(self.checks),
            "measurements": len(self.measurements),
            "finished": len(self.finished),
        }

    def size(self) -> int:
        """How many records the batch carries (rows and run closings)."""
        return sum(self.counts().values())


class IngestResult(BaseModel):
    """What the store answers for an applied batch: how many records of each kind it applied."""

    batch_id: str
    environments: int = 0
    runs: int = 0
    skills: int = 0
    checks: int = 0
    measurements: int = 0
    finished: int = 0


class RunFamily(BaseModel):
    """A run, every run it started (recursively), and the skills, checks and measurements of all of them."""

    run: RunRecord
    descendants: list[RunRecord] = Field(default_factory=list)
    skills: list[SkillRecord] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)
    measurements: list[MeasurementRecord] = Field(default_factory=list)

    def runs(self) -> list[RunRecord]:
        return [self.run, *self.descendants]
