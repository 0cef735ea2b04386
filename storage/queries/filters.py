"""The filters every aggregate shares (model, target, hardware, runtime, since), as bound SQL predicates.

Column names come from this module, never from the caller; every value is a bound parameter.
Callers validate the strings (a target's spelling, a known hardware) before they get here: storage
imports nothing of accel outside itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class ResultFilter:
    model: str | None = None  # skills.model_ref
    target: str | None = None  # skills.target, canonical (cpu/torch:fp32 is stored as cpu/torch)
    hardware: str | None = None
    runtime: str | None = None
    since: datetime | None = None  # rows recorded at or after this instant

    def skill_predicate(self, alias: str = "s") -> tuple[str, list[Any]]:
        """`alias.col = ? AND ...` over the skills table (TRUE when nothing is asked for), and its parameters."""
        pairs = (
            ("model_ref", self.model),
            ("target", self.target),
            ("hardware", self.hardware),
            ("runtime", self.runtime),
        )
        asked = [(column, value) for column, value in pairs if value is not None]
        if not asked:
            return "TRUE", []
        return " AND ".join(f"{alias}.{column} = ?" for column, _ in asked), [value for _, value in asked]

    def since_predicate(self, alias: str) -> tuple[str, list[Any]]:
        """`alias.recorded_at >= ?` when `since` is set (TRUE otherwise), and its parameters."""
        if self.since is None:
            return "TRUE", []
        return f"{alias}.recorded_at >= ?", [self.since]


def page(limit: int | None, offset: int) -> tuple[str, list[Any]]:
    """`LIMIT ? OFFSET ?` (no LIMIT when `limit` is None), and its parameters."""
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError("limit and offset must be >= 0")
    if limit is None:
        return "OFFSET ?", [offset]
    return "LIMIT ? OFFSET ?", [limit, offset]
