"""The reference model of a skill: accel's own rendering of the skill for its manifest, never the skill's.

Every stage that compares with or counts on the original transformers model (the test stage's
checks, the benchmark's FLOP counting) gets it from here.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from accel.tasks.manifest import Manifest

# What a process that renders the reference imports: the fork server of generation, checks and FLOP counting
# (tasks/isolated) imports it once, so each such process starts without paying for it. The transformers
# submodules are the ones its lazy top level loads on the first model, config or tokenizer class.
REFERENCE_PRELOAD = (
    "numpy",
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.auto.processing_auto",
    "onnxruntime",
    "openvino",
    "onnx",
    "torch.onnx",
    "accel.tasks.generate",
    "accel.tasks.generate_runner",
    "accel.tasks.check_runner",
    "accel.tasks.benchmark.flops",
)


def pristine_module(manifest: Manifest | dict[str, Any]) -> ModuleType:
    """The skill as accel renders it for this manifest's model and target: the trusted side of every check."""
    from accel.hardware import Target
    from accel.tasks.interface import build_interface
    from accel.tasks.model_files import load_config
    from accel.tasks.render import render_skill
    from accel.tasks.resolve import resolve_model
    from accel.tasks.skill_module import import_skill

    if not isinstance(manifest, Manifest):
        manifest = Manifest.model_validate(manifest)
    model = resolve_model(manifest.model.path).model_copy(update={"ref": manifest.model.ref})
    source = render_skill(
        model,
        Target.parse(manifest.target.target),
        build_interface(model, load_config(model.path)),
        manifest.artifact.file,
    )
    folder = Path(tempfile.mkdtemp(prefix="accel-pristine-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "skill.py").write_text(source)
    return import_skill(folder / "skill.py", f"_accel_pristine_{manifest.skill_id}")
