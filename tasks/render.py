"""Rendering a skill's source from its family template: shared by the generator and the test stage.

The test stage renders the same source again to get a reference it can trust: the one accel's own
template builds for this model, not whatever the skill under test says its reference is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from accel.hardware import Target
from accel.hardware.runtimes import runtime_spec
from accel.tasks import templates
from accel.tasks.errors import UnsupportedTargetError
from accel.tasks.export import source_digest as export_source_digest
from accel.tasks.interface import Interface
from accel.tasks.resolve import ResolvedModel

GENERATOR_VERSION = "5"  # 2: onnxruntime exports a cached decoder with `dynamo-attention` first;
# 3: OpenVINO runs a cached decoder as its stateful IR (`openvino-stateful`); 4: with float attention masks;
# 5: onnxruntime updates a cached decoder's KV cache in place (`dynamo-inplace-cache`)


def template_for(model: ResolvedModel, target: Target) -> templates.TemplateInfo:
    """The family template that covers this model's task on this target's runtime, or why none does."""
    info = templates.catalogue().get(model.family)
    if info is None:
        raise UnsupportedTargetError(
            f"no template for family {model.family}; templates exist for: {', '.join(templates.catalogue())}"
        )
    if model.task not in info.tasks:
        raise UnsupportedTargetError(
            f"template {info.name} (family {model.family}) does not drive task "
            f"{model.task}; it drives: {', '.join(info.tasks)}"
        )
    if target.runtime not in info.runtimes:
        raise UnsupportedTargetError(
            f"template {info.name} has no {target.runtime} runtime; it has: {', '.join(info.runtimes)}"
        )
    return info


def skill_id_for(model: ResolvedModel, target: Target, template: templates.TemplateInfo) -> str:
    """Content hash of everything a skill is made from: same inputs, same id."""
    identity = {
        "model_ref": model.ref,
        "model_path": str(model.path),
        "revision": model.revision,
        "target": str(target),
        "template": template.name,
        "template_version": template.version,
        "template_digest": templates.source_digest(),
        "exporters_digest": export_source_digest(),
        "generator_version": GENERATOR_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def render_context(
    model: ResolvedModel, target: Target, template: templates.TemplateInfo, iface: Interface, artifact: str
) -> dict[str, Any]:
    if not model.architecture.isidentifier():  # it names a transformers class; never free text
        raise UnsupportedTargetError(f"architecture {model.architecture!r} is not a Python identifier")
    return {
        "title": f"{model.architecture} ({model.family})",
        "model_ref": model.ref,
        "revision": model.revision,
        "model_dir": str(model.path),
        "architecture": model.architecture,
        "family": model.family,
        "task": model.task,
        "target": str(target),
        "runtime": target.runtime,
        "precision": target.precision,
        "device": target.device,
        "artifact": artifact,
        "runtime_constants": runtime_spec(target.runtime).template_constants(target.precision),
        "template": template.name,
        "template_version": template.version,
        "generator_version": GENERATOR_VERSION,
        "inputs": iface.inputs,
        "dims": iface.dims,
        "preprocess": iface.preprocess,
        "generation": iface.generation,
        "input_names": iface.input_names,
        "position_ids": iface.position_ids,
        "use_cache": iface.use_cache,
        "seq_meaning": iface.seq_meaning,
    }


def render_skill(model: ResolvedModel, target: Target, iface: Interface, artifact: str) -> str:
    """The skill.py source for `model` on `target`."""
    template = template_for(model, target)
    return templates.render(template, render_context(model, target, template, iface, artifact))
