"""`ResultsStore`: the typed way to write and read the results DuckDB file.

Every write is an idempotent upsert on the table's natural key, in one transaction per call, so a
retried task never duplicates a row and a reader never sees half of what one call wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from pydantic import BaseModel, TypeAdapter

from accel.storage.batch import IngestResult, RecordBatch, RunFamily
from accel.storage.connection import HeldConnection, run_transaction
from accel.storage.migrations import migrate
from accel.storage.records import (
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    RunRecord,
    RunStatus,
    SkillRecord,
    utcnow,
)

T = TypeVar("T")
_RUN_STATUS: TypeAdapter[RunStatus] = TypeAdapter(RunStatus)
_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.ConstraintException,
    duckdb.TypeMismatchException,
)


class RecordsRejectedError(ValueError):
    """Records whose values the store's columns cannot hold; nothing of the batch was written."""


@dataclass(frozen=True)
class Table:
    name: str
    record: type[BaseModel]
    keys: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()

    @property
    def columns(self) -> list[str]:
        return list(self.record.model_fields)

    def upsert_sql(self) -> str:
        cols = ", ".join(f'"{c}"' for c in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        keys = ", ".join(f'"{k}"' for k in self.keys)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in self.columns if c not in self.keys)
        return f"INSERT INTO {self.name} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO UPDATE SET {updates}"

    def to_row(self, record: BaseModel) -> list[Any]:
        return [
            json.dumps(value, default=str) if column in self.json_columns else value
            for column, value in ((c, getattr(record, c)) for c in self.columns)
        ]

    def from_row(self, names: Sequence[str], row: Sequence[Any]) -> BaseModel:
        # NULL means "not recorded": the field's default applies (an empty list or dict, or None).
        values = {
            name: json.loads(value) if name in self.json_columns else value
            for name, value in zip(names, row, strict=True)
            if value is not None
        }
        return self.record.model_validate(values)


ENVIRONMENTS = Table(
    "environments",
    EnvironmentRecord,
    ("environment_id",),
    frozenset({"accelerators", "libraries", "profile"}),
)
RUNS = Table("runs", RunRecord, ("run_id",), frozenset({"params"}))
SKILLS = Table("skills", SkillRecord, ("skill_id",), frozenset({"manifest"}))
CHECKS = Table("checks", CheckRecord, ("run_id", "skill_id", "check"), frozenset({"details"}))
MEASUREMENTS = Table(
    "measurements",
    MeasurementRecord,
    ("run_id", "skill_id", "scenario", "batch", "seq"),
    frozenset({"details"}),
)
TABLES = (ENVIRONMENTS, RUNS, SKILLS, CHECKS, MEASUREMENTS)

# A run's measurements, and those of the runs it started (a pipeline's chains, a nightly's pipeline).
_MEASURED = """
WITH RECURSIVE family(run_id) AS (
    SELECT ?::VARCHAR
    UNION
    SELECT r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id
)
SELECT s.model_ref, s.target, m.scenario, m.batch, m.seq, m.status, m.samples_ms, m.p50_ms, m.tokens_per_s,
       m.samples_per_s, m.noisy, m.noise_reason, m.round_p50_ms, m.rounds, m.error
FROM measurements m JOIN skills s USING (skill_id)
WHERE m.run_id IN (SELECT run_id FROM family)
ORDER BY m.recorded_at
"""


class ResultsStore:
    """One DuckDB results file. Cheap to create; migrates the file to the current schema on creation.

    By default every call opens the file, works in one transaction and closes it, waiting while another
    process holds it (the CLI and workers share the file so). With `hold=True` the store opens one
    connection for its lifetime and runs every call on a cursor of it, writes one at a time: about twice
    as fast per query, but no other process can open the file until `close()` (the API, the file's one
    writer under `accel up`, holds it so). Either way each call is one transaction: all of it or nothing.
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0, hold: bool = False):
        self.path = Path(path).expanduser().resolve()
        self.timeout_s = timeout_s
        migrate(self.path, timeout_s)
        self._held = HeldConnection(self.path, timeout_s) if hold else None
        self.generation = 0  # writes through this store so far

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r}{', hold=True' if self._held else ''})"

    def close(self) -> None:
        """Release the held connection (and the file), letting a write in progress finish; no-op unless held."""
        if self._held is not None:
            self._held.close(self.timeout_s)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, work: Callable[[duckdb.DuckDBPyConnection], T], write: bool = False) -> T:
        """`work(con)` in one transaction: on a fresh connection, or on a cursor of the held one."""
        if self._held is None:
            return run_transaction(self.path, work, self.timeout_s)
        done = self._held.run(work, self.timeout_s, write=write)
        if write:
            self.generation += 1
        return done

    @property
    def held(self) -> bool:
        """Whether this store holds the file open: then this process is its one writer, and `generation`
        (incremented by every write) changes exactly when the data does."""
        return self._held is not None

    # writes -------------------------------------------------------------------------------------

    def _upsert(self, table: Table, records: Sequence[BaseModel]) -> None:
        if not records:
            return
        sql, rows = table.upsert_sql(), [table.to_row(r) for r in records]
        self._run(lambda con: con.executemany(sql, rows), write=True)

    def record_environment(self, environment: EnvironmentRecord) -> str:
        self._upsert(ENVIRONMENTS, [environment])
        return environment.environment_id

    def record_run(self, run: RunRecord) -> None:
        self._upsert(RUNS, [run])

    def finish_run(
        self, run_id: str, status: RunStatus, message: str | None = None, finished_at: datetime | None = None
    ) -> None:
        status = _RUN_STATUS.validate_python(status)
        self._run(lambda con: self._finish(con, run_id, status, message, finished_at), write=True)

    def _finish(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        status: RunStatus,
        message: str | None,
        finished_at: datetime | None,
    ) -> None:
        sql = (
            "UPDATE runs SET status = ?, message = coalesce(?, message), finished_at = ? "
            "WHERE run_id = ? RETURNING run_id"
        )
        if con.execute(sql, [status, message, finished_at or utcnow(), run_id]).fetchone() is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")

    def record_skill(self, skill: SkillRecord) -> None:
        self._upsert(SKILLS, [skill])

    def record_checks(self, checks: Sequence[CheckRecord]) -> None:
        """All checks of one report land together, or none does."""
        self._upsert(CHECKS, checks)

    def record_measurements(self, measurements: Sequence[MeasurementRecord]) -> None:
        self._upsert(MEASUREMENTS, measurements)

    def apply(self, batch: RecordBatch) -> IngestResult:
        """Upsert every row of `batch`, then close its `finished` runs, in one transaction: all or nothing.

        Applying a batch again changes nothing (upserts on natural keys; closing a closed run again
        writes the same values). KeyError, and nothing written, when it closes a run the store lacks.
        """
        work = [
            (table.upsert_sql(), [table.to_row(r) for r in records])
            for table, records in (
                (ENVIRONMENTS, batch.environments),
                (RUNS, batch.runs),
                (SKILLS, batch.skills),
                (CHECKS, batch.checks),
                (MEASUREMENTS, batch.measurements),
            )
            if records
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for sql, rows in work:
                con.executemany(sql, rows)
            for done in batch.finished:
                self._finish(con, done.run_id, done.status, done.message, done.finished_at)

        if work or batch.finished:
            try:
                self._run(write, write=True)
            except _DATA_ERRORS as err:  # a value the column cannot hold (an integer past INT32, ...)
                raise RecordsRejectedError(f"the results store cannot hold these records: {err}") from None
        return IngestResult(batch_id=batch.batch_id, **batch.counts())

    # reads --------------------------------------------------------------------------------------

    def _select(self, table: Table, where: dict[str, Any], order_by: str, limit: int | None = None) -> list:
        filters = {k: v for k, v in where.items() if v is not None}
        sql = f"SELECT * FROM {table.name}"
        if filters:
            sql += " WHERE " + " AND ".join(f'"{k}" = ?' for k in filters)
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def read(con: duckdb.DuckDBPyConnection) -> list:
            cursor = con.execute(sql, list(filters.values()))
            names = [d[0] for d in cursor.description]
            return [table.from_row(names, row) for row in cursor.fetchall()]

        return self._run(read)

    def get_environment(self, environment_id: str) -> EnvironmentRecord | None:
        found = self._select(ENVIRONMENTS, {"environment_id": environment_id}, "recorded_at")
        return found[0] if found else None

    def get_run(self, run_id: str) -> RunRecord | None:
        found = self._select(RUNS, {"run_id": run_id}, "started_at")
        return found[0] if found else None

    def list_runs(self, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        return self._select(RUNS, {"kind": kind, "status": status}, "started_at DESC NULLS LAST", limit)

    def get_skill(self, skill_id: str) -> SkillRecord | None:
        found = self._select(SKILLS, {"skill_id": skill_id}, "created_at")
        return found[0] if found else None

    def list_skills(self, model_ref: str | None = None, target: str | None = None) -> list[SkillRecord]:
        return self._select(SKILLS, {"model_ref": model_ref, "target": target}, "created_at, skill_id")

    def checks(self, run_id: str | None = None, skill_id: str | None = None) -> list[CheckRecord]:
        return self._select(CHECKS, {"run_id": run_id, "skill_id": skill_id}, 'recorded_at, "check"')

    def measurements(self, run_id: str | None = None, skill_id: str | None = None) -> list[MeasurementRecord]:
        return self._select(MEASUREMENTS, {"run_id": run_id, "skill_id": skill_id}, "skill_id, scenario, batch, seq")

    def run_family(self, run_id: str) -> RunFamily | None:
        """The run, the runs it started (recursively), and their skills, checks and measurements; None if
        there is no such run. Read in one transaction, so the parts agree with each other."""
        family = (
            "WITH RECURSIVE family(run_id) AS (SELECT ?::VARCHAR UNION "
            "SELECT r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id) "
        )
        in_family = "run_id IN (SELECT run_id FROM family)"
        reads = {
            "runs": (RUNS, f"{family}SELECT * FROM runs WHERE {in_family} ORDER BY started_at NULLS LAST, run_id"),
            "checks": (CHECKS, f'{family}SELECT * FROM checks WHERE {in_family} ORDER BY recorded_at, "check"'),
            "measurements": (
                MEASUREMENTS,
                f"{family}SELECT * FROM measurements WHERE {in_family} "
                "ORDER BY recorded_at, skill_id, scenario, batch, seq",
            ),
            "skills": (
                SKILLS,
                f"{family}SELECT * FROM skills WHERE skill_id IN (SELECT skill_id FROM checks WHERE {in_family} "
                f"UNION SELECT skill_id FROM measurements WHERE {in_family}) ORDER BY created_at, skill_id",
            ),
        }

        def read(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
            found = {}
            for name, (table, sql) in reads.items():
                cursor = con.execute(sql, [run_id])
                names = [d[0] for d in cursor.description]
                found[name] = [table.from_row(names, row) for row in cursor.fetchall()]
            return found

        found = self._run(read)
        run = next((r for r in found["runs"] if r.run_id == run_id), None)
        if run is None:
            return None
        return RunFamily(
            run=run,
            descendants=[r for r in found["runs"] if r.run_id != run_id],
            skills=found["skills"],
            checks=found["checks"],
            measurements=found["measurements"],
        )

    def run_measurements(self, run_id: str) -> list[dict[str, Any]]:
        """The measurements of a run and of the runs it started, each with its skill's model ref and target."""
        return self.query(_MEASURED, [run_id])

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a SQL query as dicts (for aggregate reads; writes go through the record_* methods)."""

        def read(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self._run(read)

    def count(self, table: str) -> int:
        if table not in {t.name for t in TABLES}:
            raise ValueError(f"unknown table {table!r}: {', '.join(t.name for t in TABLES)}")
        return self._run(lambda con: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
