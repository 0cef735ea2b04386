"""A generated skill as every stage sees it (GeneratedSkill), and its record in the results store.

Light on purpose (pydantic and the store's record models only): the flows import it without the
generator, which imports torch and transformers.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from accel.storage import SkillRecord
from accel.tasks.results_store import AnyResultsStore, open_results_store


class GeneratedSkill(BaseModel):
    skill_id: str
    path: Path
    reused: bool
    seconds: float
    manifest: dict[str, Any]

    @property
    def target(self) -> str:
        return self.manifest["target"]["target"]


def skill_record(skill: GeneratedSkill) -> SkillRecord:
    m = skill.manifest
    return SkillRecord(
        skill_id=skill.skill_id,
        model_ref=m["model"]["ref"],
        model_revision=m["model"]["revision"],
        family=m["model"]["family"],
        task=m["model"]["task"],
        architecture=m["model"]["architecture"],
        target=m["target"]["target"],
        hardware=m["target"]["hardware"],
        runtime=m["target"]["runtime"],
        precision=m["target"]["precision"],
        template=m["template"]["name"],
        template_version=m["template"]["version"],
        generator_version=m["generator_version"],
        path=str(skill.path),
        manifest=m,
        created_at=datetime.fromisoformat(m["created_at"]),
    )


def record_skill(skill: GeneratedSkill, store: AnyResultsStore | None = None) -> None:
    """Record the skill in `store`, by default the results store of the settings (file or accel API)."""
    (store or open_results_store()).record_skill(skill_record(skill))
