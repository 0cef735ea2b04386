"""Model resolution as the flows and the CLI run it: in an isolated process forked warm (tasks/isolated).

Resolving reads a model's family through transformers' auto mappings, which import torch: a second or
more of imports that a flow-run process or a CLI command would pay for one lookup. The warm server has
them; the caller gets the ResolvedModel as a dict, or the same ModelRefError / UnsupportedModelError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accel.tasks.isolated.call import call
from accel.tasks.reference import REFERENCE_PRELOAD


def resolve_isolated(ref: str, progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """tasks/resolve.resolve_model(ref), computed in an isolated process: its fields as JSON values.

    `progress` hears what a first resolve does at length (a packaged GGUF converted once, ~15 s)."""
    return call("accel.tasks.resolve:resolve_model", REFERENCE_PRELOAD, progress=progress, ref=ref)
