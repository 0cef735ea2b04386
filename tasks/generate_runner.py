"""What the generate stage runs in its isolated process (tasks/generate_stage, through tasks/isolated/call).

Imported only there, in the child forked from the server that has torch and transformers.
"""

from __future__ import annotations

from collections.abc import Callable

from accel.tasks.generated import GeneratedSkill


def generate_here(
    ref: str,
    target: str,
    out_dir: str | None = None,
    force: bool = False,
    device_slot: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> GeneratedSkill:
    """tasks/generate.generate with JSON-able arguments: `device_slot` (a hardware kind) makes its work
    on the device wait for that device's benchmark slot."""
    from pathlib import Path

    from accel.tasks.device_lock import device_slot as slot
    from accel.tasks.generate import generate

    return generate(
        ref,
        target,
        out_dir=Path(out_dir) if out_dir else None,
        force=force,
        **({"progress": progress} if progress else {}),
        device_guard=(lambda: slot(device_slot)) if device_slot else None,
    )
