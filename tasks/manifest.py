"""A skill's manifest.json: what every stage reads about a skill, as one typed model.

The generator writes it; the test stage, the benchmark and the results store read it. A folder whose
manifest is missing, not JSON or incomplete is refused here, once, with what is wrong, so no stage
fails later on a missing key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accel.tasks.errors import SkillDirError


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class ManifestModel(_Part):
    ref: str
    revision: str | None = None
    path: str
    family: str
    task: str
    architecture: str
    parameters: int | None = None


class ManifestTarget(_Part):
    target: str
    hardware: str
    runtime: str
    precision: str
    device: str = ""


class ManifestTemplate(_Part):
    name: str
    version: str


class ManifestArtifact(_Part):
    file: str
    bytes: int | None = None
    sha256: str | None = None


class Manifest(_Part):
    skill_id: str
    model: ManifestModel
    target: ManifestTarget
    template: ManifestTemplate
    generator_version: str
    artifact: ManifestArtifact
    inputs: dict[str, dict[str, Any]]
    dims: dict[str, Any]
    outputs: dict[str, dict[str, Any]]
    generation: dict[str, Any] | None = None
    validation: dict[str, Any] = Field(default_factory=dict)
    created_at: str


def _problems(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].lower()}" for e in err.errors()[:6])


def load_manifest(skill_dir: Path) -> Manifest:
    """The typed manifest of the skill in `skill_dir`; SkillDirError for anything that is not a whole skill."""
    skill_dir = Path(skill_dir)
    path = skill_dir / "manifest.json"
    if not (skill_dir / "skill.py").is_file() or not path.is_file():
        raise SkillDirError(
            f"{skill_dir} is not a skill directory: it needs skill.py and manifest.json "
            "(make one with `accel generate`)"
        )
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise SkillDirError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise SkillDirError(f"{path} must hold a JSON object, not {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise SkillDirError(
            f"{path} is incomplete or malformed ({_problems(err)}); regenerate it with `accel generate --force`"
        ) from None


def read_manifest(skill_dir: Path) -> dict[str, Any]:
    """The manifest as the plain dict it was written as, after checking it is complete."""
    return load_manifest(skill_dir).model_dump(mode="json")
