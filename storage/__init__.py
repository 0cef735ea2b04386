"""The results store: the DuckDB file (schema migrations, idempotent writes, typed reads), and the same
store behind the accel API over HTTP (batches of the same records, a local outbox for failed sends).

Imports nothing else of accel: callers pass the file path or the URL (`tasks.results_store` opens the
one the settings name).
"""

from accel.storage.batch import IngestResult, RecordBatch, RunFamily, RunFinish
from accel.storage.compare import PointComparison, compare_runs, run_measurements
from accel.storage.connection import StoreBusyError
from accel.storage.http_store import FlushReport, HttpResultsStore, ResultsRefusedError, ResultsUnavailableError
from accel.storage.migrations import MIGRATIONS, migrate, schema_version
from accel.storage.outbox import Outbox
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
    "FlushReport",
    "HttpResultsStore",
    "IngestResult",
    "MeasurementRecord",
    "Outbox",
    "PointComparison",
    "RecordBatch",
    "ResultsRefusedError",
    "ResultsStore",
    "ResultsUnavailableError",
    "RunFamily",
    "RunFinish",
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
