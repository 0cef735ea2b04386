"""Commands that take a skill directory or a model ref: a ref (with its target) is generated first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from accel.tasks.errors import SkillDirError


def skill_dir_or_generate(skill: str, target: str | None, command: str, progress: Callable[[str, float], None]) -> Path:
    from accel.tasks.generate import generate  # here: the generator imports torch

    path = Path(skill).expanduser()
    if (path / "manifest.json").is_file():
        return path
    if target is None:
        raise SkillDirError(
            f"{skill!r} is not a skill directory; to {command} a model, name a target: "
            f"accel {command} {skill} --target cpu/onnxruntime"
        )
    return generate(skill, target, progress=progress).path
