"""Generate a skill: a standalone implementation of one model for one target, proven on the spot.

A skill is rendered from its family's template, its artifact exported for the target's runtime,
and the result checked against the reference transformers model on an input shape the export
never saw. It lands in `<skills dir>/<skill_id>/` only once all of that passed, in one rename, so a
failure leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect import task
from pydantic import BaseModel

from accel.hardware import Target, detect, target_status
from accel.settings import get_settings
from accel.storage import SkillRecord
from accel.tasks import templates
from accel.tasks.errors import GenerationError, UnsupportedTargetError
from accel.tasks.export import EXPORTERS, export, quantize_int8, silenced_output
from accel.tasks.interface import Interface, build_interface
from accel.tasks.model_files import load_config
from accel.tasks.model_lock import MODEL_LOADING
from accel.tasks.progress import stage_progress
from accel.tasks.render import (
    GENERATOR_VERSION,
    TORCH_DTYPES,
    device_for,
    render_context,
    skill_id_for,
    template_for,
)
from accel.tasks.resolve import MODEL_FILE_PATTERNS, ResolvedModel, resolve_model
from accel.tasks.results_store import AnyResultsStore, open_results_store
from accel.tasks.skill_module import import_skill
from accel.tasks.tolerances import Comparison, compare_outputs, tolerance_for

_GENERATION_CHECK_TOKENS = 4
_STALE_STAGING_S = 3600

Progress = Callable[[str, float], None]


class GeneratedSkill(BaseModel):
    skill_id: str
    path: Path
    reused: bool
    seconds: float
    manifest: dict[str, Any]

    @property
    def target(self) -> str:
        return self.manifest["target"]["target"]


def _quiet(step: str, fraction: float) -> None:
    del step, fraction


def _copy_assets(model_dir: Path, assets: Path) -> None:
    """The tokenizer / processor / config files (not the weights), so `preprocess` needs nothing else."""
    assets.mkdir()
    for pattern in MODEL_FILE_PATTERNS:
        for file in model_dir.glob(pattern):
            if file.is_file() and file.suffix != ".safetensors" and not file.name.endswith(".index.json"):
                shutil.copy2(file, assets / file.name)


def _shapes(
    example_sizes: dict[str, int], example: dict[str, Any], check_sizes: dict[str, int], check: dict[str, Any]
) -> dict[str, Any]:
    """Output shapes with symbolic axes: an axis that follows the batch (or seq) size from the export
    example to the check inputs is `batch` (or `seq`); one that stays put is its size."""
    shapes = {}
    for name, value in check.items():
        axes: list[str | int] = []
        for first, second in zip(example[name].shape, value.shape, strict=True):
            symbol = next(
                (
                    k
                    for k in ("batch", "seq")
                    if k in check_sizes and (first, second) == (example_sizes[k], check_sizes[k])
                ),
                None,
            )
            axes.append(symbol or (int(second) if first == second else "dynamic"))
        shapes[name] = {"shape": axes, "dtype": str(value.dtype)}
    return shapes


def _check_shapes(module: ModuleType) -> tuple[dict[str, int], dict[str, int]]:
    """(export example, validation) sizes: batch 2 and 3, and two different lengths where there is a seq."""
    seq = module.DIMS.get("seq")
    if seq is None:
        return {"batch": 2}, {"batch": 3}
    example = seq["default"]
    check = example + 7 if seq["max"] is None or example + 7 <= seq["max"] else max(seq["min"], example - 3)
    return {"batch": 2, "seq": example}, {"batch": 3, "seq": check}


class _Attempt(BaseModel):
    exporter: str
    error: str | None = None


def _try_exporter(
    module: ModuleType,
    reference: Any,
    target: Target,
    exporter: str,
    artifact: Path,
    iface: Interface,
    family: str,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export with one exporter and validate the skill it gives; (artifact facts, validation facts)."""
    example_sizes, check_sizes = _check_shapes(module)
    example = module.make_inputs(example_sizes["batch"], example_sizes.get("seq"), seed=0)
    example_outputs = module.run_reference(reference, module.check_inputs(example))
    output_names = list(example_outputs)
    progress(f"export ({exporter})", 0.3)
    started = time.perf_counter()
    facts = export(
        reference,
        example,
        module.INPUTS,
        output_names,
        exporter,
        artifact,
        device=target.torch_device if target.runtime == "torch" else "cpu",
        dtype=TORCH_DTYPES[target.precision] if target.runtime == "torch" else "float32",
    )
    if target.runtime == "onnxruntime" and target.precision == "int8":
        facts.update(quantize_int8(artifact))
    facts["export_s"] = round(time.perf_counter() - started, 3)

    progress("validate against the reference", 0.7)
    started = time.perf_counter()
    skill = module.Skill().load()
    skill._reference = reference if target.precision == "fp32" and target.torch_device == "cpu" else None
    try:
        check = module.make_inputs(check_sizes["batch"], check_sizes.get("seq"), seed=1)
        outputs = skill(check)
        tolerance = tolerance_for(family, target.runtime, target.precision)
        comparison: Comparison = compare_outputs(outputs, skill.reference(check), tolerance)
        if not comparison.passed:
            raise GenerationError(
                f"{exporter} export does not match the reference on batch "
                f"{check_sizes['batch']}, seq {check_sizes.get('seq', '-')}: {comparison.message}"
            )
        # One row too: an exported program may specialise its batch axis to > 1 (torch.export guards on
        # WavLM's batch-dependent reshapes), and a skill that fails on a single row is no skill.
        single = module.make_inputs(1, check_sizes.get("seq"), seed=3)
        single_comparison = compare_outputs(skill(single), skill.reference(single), tolerance)
        if not single_comparison.passed:
            raise GenerationError(
                f"{exporter} export does not match the reference on a single row: {single_comparison.message}"
            )
        tokens_equal = None
        if iface.generation is not None and target.precision == "fp32":
            prompt = module.make_inputs(2, example_sizes.get("seq"), seed=2)
            got = skill.generate(prompt, _GENERATION_CHECK_TOKENS)
            want = skill.reference_generate(prompt, _GENERATION_CHECK_TOKENS)
            tokens_equal = got.shape == want.shape and bool((got == want).all())
            if not tokens_equal:
                raise GenerationError(
                    f"greedy tokens differ from transformers' generate: {got.tolist()} vs {want.tolist()}"
                )
    finally:
        skill.close()
    validation = {
        "example": example_sizes,
        "check": check_sizes,
        "single_row_max_abs_diff": single_comparison.max_abs_diff,
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "max_abs_diff": comparison.max_abs_diff,
        "max_rel_diff": comparison.max_rel_diff,
        "worst_output": comparison.worst_output,
        "per_output": comparison.per_output,
        "generation_tokens_equal": tokens_equal,
        "validate_s": round(time.perf_counter() - started, 3),
        "outputs": _shapes(example_sizes, example_outputs, check_sizes, outputs),
    }
    return facts, validation


def _build(
    model: ResolvedModel,
    target: Target,
    template: templates.TemplateInfo,
    iface: Interface,
    skill_id: str,
    staging: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Render, export and validate into `staging`; returns the manifest. Raises GenerationError."""
    _copy_assets(model.path, staging / "assets")
    attempts: list[_Attempt] = []
    reference = None
    for number, (exporter, artifact_name) in enumerate(EXPORTERS[target.runtime]):
        progress("render skill.py", 0.1)
        source = templates.render(template, render_context(model, target, template, iface, artifact_name))
        (staging / "skill.py").write_text(source)
        module_name = f"_accel_skill_{skill_id}_{number}"
        module = import_skill(staging / "skill.py", module_name)
        artifact = staging / artifact_name
        try:
            if reference is None or target.runtime == "torch":
                progress("load the reference model", 0.2)
                dtype = TORCH_DTYPES[target.precision] if target.runtime == "torch" else "float32"
                device = target.torch_device if target.runtime == "torch" else "cpu"
                with MODEL_LOADING:
                    reference = module.build_reference(dtype=dtype, device=device)
            with silenced_output():
                facts, validation = _try_exporter(
                    module, reference, target, exporter, artifact, iface, model.family, progress
                )
        except Exception as err:  # any exporter failure: record it, clean up, try the next one
            attempts.append(_Attempt(exporter=exporter, error=f"{type(err).__name__}: {err}"[:2000]))
            for leftover in staging.glob("model.*"):
                leftover.unlink()
            continue
        finally:
            sys.modules.pop(module_name, None)
        attempts.append(_Attempt(exporter=exporter))
        facts.update(
            file=artifact_name,
            bytes=artifact.stat().st_size,
            sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        )
        return _manifest(model, target, template, iface, skill_id, facts, validation, attempts)
    raise GenerationError(
        f"could not generate {model.ref} for {target}: " + " | ".join(f"{a.exporter}: {a.error}" for a in attempts)
    )


def _manifest(
    model: ResolvedModel,
    target: Target,
    template: templates.TemplateInfo,
    iface: Interface,
    skill_id: str,
    artifact: dict[str, Any],
    validation: dict[str, Any],
    attempts: list[_Attempt],
) -> dict[str, Any]:
    generation = None
    if iface.generation is not None:
        generation = {
            **iface.generation,
            "strategy": "greedy",
            "note": "no KV cache: every step runs the graph on the whole sequence",
        }
    return {
        "skill_id": skill_id,
        "model": {
            "ref": model.ref,
            "repo_id": model.repo_id,
            "revision": model.revision,
            "source": model.source,
            "path": str(model.path),
            "family": model.family,
            "task": model.task,
            "architecture": model.architecture,
            "model_type": model.model_type,
            "parameters": model.parameters,
        },
        "target": {
            "target": str(target),
            "hardware": target.hardware,
            "runtime": target.runtime,
            "precision": target.precision,
            "device": device_for(target),
            "work_pool": target.work_pool,
        },
        "template": {"name": template.name, "version": template.version},
        "generator_version": GENERATOR_VERSION,
        "artifact": artifact,
        "inputs": iface.inputs,
        "dims": iface.dims,
        "outputs": validation.pop("outputs"),
        "generation": generation,
        "validation": validation,
        "attempts": [a.model_dump() for a in attempts],
        "created_at": datetime.now(UTC).isoformat(),
    }


def _clear_stale_staging(out_dir: Path) -> None:
    for stale in out_dir.glob(".staging-*"):
        if time.time() - stale.stat().st_mtime > _STALE_STAGING_S:
            shutil.rmtree(stale, ignore_errors=True)


def _publish(staging: Path, final: Path) -> None:
    """Move the finished skill into place in one rename; a forced regeneration replaces the old one."""
    if final.exists():
        retired = final.with_name(f".retired-{final.name}-{uuid.uuid4().hex[:8]}")
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(final)


def generate(
    ref: str | ResolvedModel,
    target: str | Target,
    *,
    out_dir: Path | None = None,
    force: bool = False,
    progress: Progress = _quiet,
) -> GeneratedSkill:
    """Generate (or reuse) the skill for `ref` on `target`.

    Raises ModelRefError / UnsupportedModelError / TargetError / UnsupportedTargetError for requests
    that cannot be served, GenerationError when generation ran and no exporter produced a skill that
    matches the reference.
    """
    started = time.perf_counter()
    target = Target.parse(target)
    progress("resolve the model", 0.0)
    model = ref if isinstance(ref, ResolvedModel) else resolve_model(ref)
    template = template_for(model, target)
    status = target_status(target, detect())
    if not status.available:
        raise UnsupportedTargetError(
            f"{target} cannot run on this machine, so its skill cannot be checked here: {status.reason}"
        )
    skill_id = skill_id_for(model, target, template)
    out_dir = (out_dir or get_settings().skills_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / skill_id
    if (final / "manifest.json").is_file() and not force:
        manifest = json.loads((final / "manifest.json").read_text())
        return GeneratedSkill(
            skill_id=skill_id,
            path=final,
            reused=True,
            manifest=manifest,
            seconds=round(time.perf_counter() - started, 3),
        )
    _clear_stale_staging(out_dir)
    iface = build_interface(model, load_config(model.path))
    staging = out_dir / f".staging-{skill_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with MODEL_LOADING:  # exporters and output redirection are process-wide too: one generation at a time
            manifest = _build(model, target, template, iface, skill_id, staging, progress)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        progress("publish", 0.95)
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("done", 1.0)
    return GeneratedSkill(skill_id=skill_id, path=final, reused=False, manifest=manifest, seconds=manifest["seconds"])


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


@task(name="generate_skill", task_run_name="generate {ref} for {target}")
def generate_skill(ref: str, target: str, force: bool = False, out_dir: str | None = None) -> GeneratedSkill:
    """Prefect task: generate (or reuse) the skill of `ref` for `target` and record it in the results store.

    No retries: a model that does not export or does not match its reference fails the same way again.
    """
    skill = generate(
        ref,
        target,
        out_dir=Path(out_dir) if out_dir else None,
        force=force,
        progress=stage_progress("generate", model=ref, target=target),
    )
    record_skill(skill)
    return skill


class TemplateEntry(BaseModel):
    """One template as `accel templates` lists it: what it covers, and what of that runs here."""

    name: str
    family: str
    version: str
    tasks: list[str]
    runtimes: list[str]
    hardware: dict[str, list[str]]
    targets_here: list[str]


def template_catalogue() -> list[TemplateEntry]:
    """Every template, read from the template files, with the targets this machine can run it on."""
    from accel.hardware import all_targets

    profile = detect()
    runnable = [t for t in all_targets() if target_status(t, profile).available]
    entries = []
    for info in templates.catalogue().values():
        hardware = {rt: sorted({t.hardware for t in all_targets() if t.runtime == rt}) for rt in info.runtimes}
        entries.append(
            TemplateEntry(
                name=info.name,
                family=info.family,
                version=info.version,
                tasks=list(info.tasks),
                runtimes=list(info.runtimes),
                hardware=hardware,
                targets_here=[str(t) for t in runnable if t.runtime in info.runtimes],
            )
        )
    return entries
