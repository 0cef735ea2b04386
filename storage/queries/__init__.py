"""Aggregate queries of the results store: SQL, run in DuckDB (no loops over rows in Python)."""

from accel.storage.queries.compare import measured_targets, speedups
from accel.storage.queries.export import FORMATS, export_measurements
from accel.storage.queries.filters import DEFAULT_LIMIT, MAX_LIMIT, ResultFilter
from accel.storage.queries.history import METRICS, ever_measured, history
from accel.storage.queries.recommend import candidates, measured_shapes
from accel.storage.queries.regressions import previous_run, regressions
from accel.storage.queries.summary import summary

__all__ = [
    "DEFAULT_LIMIT",
    "FORMATS",
    "MAX_LIMIT",
    "METRICS",
    "ResultFilter",
    "candidates",
    "ever_measured",
    "export_measurements",
    "history",
    "measured_shapes",
    "measured_targets",
    "previous_run",
    "regressions",
    "speedups",
    "summary",
]
