"""Helpers shared by the benchmark scripts (not part of the product)."""

from __future__ import annotations

import os

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {len(os.sched_getaffinity(0))} cores"
