"""The test levels by name (which checks each runs is declared with the checks, in checks.py)."""

from __future__ import annotations

from accel.tasks.errors import LevelError

LEVEL_NAMES = ("basic", "comprehensive", "fault_tolerance")


def check_level(level: str) -> str:
    """`level` when it is a test level; LevelError naming the accepted ones otherwise."""
    if level not in LEVEL_NAMES:
        raise LevelError(f"unknown level {level!r}: accepted {', '.join(LEVEL_NAMES)}")
    return level
