"""A skill's id covers its templates' and its exporters' source: an edited template or exporter never reuses
a stale skill."""

from pathlib import Path

from accel.hardware import Target
from accel.tasks import export, render, templates
from accel.tasks.render import skill_id_for, template_for
from accel.tasks.resolve import ResolvedModel

MODEL = ResolvedModel(
    ref="tiny",
    path=Path("/models/tiny"),
    source="local",
    revision="sha256:0",
    family="text-generation",
    task="text-generation",
    architecture="LlamaForCausalLM",
    model_type="llama",
    auto_class="AutoModelForCausalLM",
    parameters=1,
    parameters_source="config",
)


def test_the_skill_id_changes_with_any_template_file(monkeypatch):
    target = Target.parse("cpu/onnxruntime")
    template = template_for(MODEL, target)
    before = skill_id_for(MODEL, target, template)
    assert skill_id_for(MODEL, target, template) == before  # deterministic
    monkeypatch.setattr(templates, "source_digest", lambda: "another-source")
    assert skill_id_for(MODEL, target, template) != before


def test_the_digest_reads_every_template_part():
    digest = templates.source_digest()
    assert len(digest) == 16 and digest == templates.source_digest()
    parts = {p.relative_to(templates.TEMPLATE_DIR).parts[0] for p in templates.TEMPLATE_DIR.rglob("*.py.j2")}
    assert {"parts", "runtimes"} <= parts


def test_the_skill_id_changes_with_the_exporters_code(monkeypatch):
    target = Target.parse("cpu/openvino")
    template = template_for(MODEL, target)
    before = skill_id_for(MODEL, target, template)
    digest = export.source_digest()
    assert len(digest) == 16 and digest == export.source_digest()
    monkeypatch.setattr(render, "export_source_digest", lambda: "another-exporter")
    assert skill_id_for(MODEL, target, template) != before
