"""The benchmark stage (stage.py), its configuration and refusals (config.py), rounds in fresh processes
(process.py), isolated FLOP counting (flops.py), the rows with their noise flags (rows.py) and a decode's
memory-bandwidth utilisation (bandwidth.py)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Exported lazily: `BenchConfig` is a plain pydantic model the API validates requests with, and
# importing it must not pull in Prefect, the runners and the ML stack behind the stage.
_EXPORTS = {
    "BenchConfig": "config",
    "BenchReport": "config",
    "benchmark": "stage",
    "benchmark_skill": "task",
    "count_flops": "flops",
    "skipped_rows": "task",
}
__all__ = ["BenchConfig", "BenchReport", "benchmark", "benchmark_skill", "count_flops", "skipped_rows"]

if TYPE_CHECKING:
    from accel.tasks.benchmark.config import BenchConfig, BenchReport
    from accel.tasks.benchmark.flops import count_flops
    from accel.tasks.benchmark.stage import benchmark
    from accel.tasks.benchmark.task import benchmark_skill, skipped_rows


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
