"""The DuckDB results store: schema migrations, idempotent writes, typed reads.

Imports nothing else of accel: callers pass the file path (`Settings.results_path`).
"""

from accel.storage.compare import PointComparison, compare_runs, run_measurements
from accel.storage.connection import StoreBusyError
from accel.storage.migrations import MIGRATIONS, migrate, schema_version
from accel.storage.records import (
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    RunRecord,
    SkillRecord,
)
from accel.storage.stats import (
    DEFAULT_THRESHOLD,
    Change,
    Summary,
    compare_rounds,
    summarize,
)
from accel.storage.store import TABLES, ResultsStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIGRATIONS",
    "TABLES",
    "Change",
    "CheckRecord",
    "EnvironmentRecord",
    "MeasurementRecord",
    "PointComparison",
    "ResultsStore",
    "RunRecord",
    "SkillRecord",
    "StoreBusyError",
    "Summary",
    "compare_rounds",
    "compare_runs",
    "migrate",
    "run_measurements",
    "schema_version",
    "summarize",
]
