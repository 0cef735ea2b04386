"""The DuckDB results store: schema migrations, idempotent writes, typed reads.

Imports nothing else of accel: callers pass the file path (`Settings.results_path`).
"""

from accel.storage.connection import StoreBusyError
from accel.storage.migrations import MIGRATIONS, migrate, schema_version
from accel.storage.records import (
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    RunRecord,
    SkillRecord,
)
from accel.storage.store import TABLES, ResultsStore

__all__ = [
    "MIGRATIONS",
    "TABLES",
    "CheckRecord",
    "EnvironmentRecord",
    "MeasurementRecord",
    "ResultsStore",
    "RunRecord",
    "SkillRecord",
    "StoreBusyError",
    "migrate",
    "schema_version",
]
