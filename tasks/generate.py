"""Generate a skill: a standalone implementation of one model for one target, proven on the spot.

A skill is rendered from its family's template, its artifact exported for the target's runtime,
and the result checked against the reference transformers model on an input shape the export
never saw. It lands in `<skills dir>/<skill_id>/` only once all of that passed, in one rename, so a
failure leaves nothing half-written behind.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from accel.hardware import Target, detect, target_status
from accel.hardware.runtimes import runtime_spec
from accel.hardware.targets import TORCH_DTYPES
from accel.settings import get_settings
from accel.tasks import templates
from accel.tasks.check_context import Verdict
from accel.tasks.errors import GenerationError, UnsupportedTargetError
from accel.tasks.export import ONNX_OPSET, dynamic_axes, export, quantize_int8, silenced_output
from accel.tasks.export import source_digest as export_source_digest
from accel.tasks.export_cache import artifact_files, export_key, file_sha256, shared_export
from accel.tasks.generated import GeneratedSkill
from accel.tasks.generation_checks import cache_consistency, pad_second_row
from accel.tasks.interface import Interface, build_interface
from accel.tasks.model_files import load_config
from accel.tasks.model_lock import MODEL_LOADING
from accel.tasks.render import (
    GENERATOR_VERSION,
    render_context,
    skill_id_for,
    template_for,
)
from accel.tasks.resolve import MODEL_FILE_PATTERNS, ResolvedModel, resolve_model
from accel.tasks.skill_module import import_skill
from accel.tasks.tolerances import Comparison, compare_outputs, tolerance_for

_GENERATION_CHECK_TOKENS = 4
_STALE_STAGING_S = 3600

Progress = Callable[[str, float], None]
DeviceGuard = Callable[[], AbstractContextManager[Any]]
_no_guard: DeviceGuard = nullcontext


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


def _export_key(
    identity: dict[str, Any],
    exporter: str,
    example: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    output_names: list[str],
) -> str:
    """The shared export's key: everything `export` makes an ONNX graph (or OpenVINO IR) from
    (tasks/export_cache)."""
    from importlib.metadata import version

    import onnx
    import torch

    facts = {
        **identity,
        "exporter": exporter,
        "opset": ONNX_OPSET,
        "dtype": "float32",
        "device": "cpu",
        "input_names": list(inputs),
        "inputs": inputs,
        "dynamic_axes": dynamic_axes(inputs),
        "output_names": output_names,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    if exporter.startswith("openvino"):
        facts["openvino"] = version("openvino")
    return export_key(facts, example)


def _try_exporter(
    module: ModuleType,
    reference: Any,
    target: Target,
    exporter: str,
    artifact: Path,
    iface: Interface,
    family: str,
    identity: dict[str, Any],
    progress: Progress,
    device_guard: DeviceGuard,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export with one exporter and validate the skill it gives; (artifact facts, validation facts).

    onnxruntime and OpenVINO take their fp32 graph from the shared export cache (tasks/export_cache):
    the second runtime of a model does not export it again, and int8 quantizes its own copy of it.
    The cache entry stays locked until this skill has validated it, so only a validated export is kept.
    An encoder-decoder with a KV cache has two graphs, the decoder's (`artifact`) and the encoder's.
    """
    example_sizes, check_sizes = _check_shapes(module)
    graph_inputs, example = _graph_example(module, example_sizes)
    with silenced_output():
        example_outputs = module.run_reference(reference, example)
    _check_cache_sizes(module, example_outputs)
    graphs = [(reference, graph_inputs, example, list(example_outputs), artifact)]
    if hasattr(module, "ENCODER_ARTIFACT"):
        encoder_example = module.encoder_example(example_sizes["batch"], example_sizes.get("seq"), seed=0)
        with silenced_output():
            encoder_outputs = module.run_reference(reference.encoder_graph, encoder_example)
        graphs.append(
            (
                reference.encoder_graph,
                module.ENCODER_INPUTS,
                encoder_example,
                list(encoder_outputs),
                artifact.with_name(module.ENCODER_ARTIFACT),
            )
        )
    runtime = runtime_spec(target.runtime)
    with ExitStack() as stack:
        exported = [
            _export_graph(stack, *graph, exporter=exporter, target=target, identity=identity, progress=progress)
            for graph in graphs
        ]
        progress("validate against the reference", 0.7)
        with device_guard(), silenced_output():  # the skill runs on the target's device from here on
            validation = _validate(module, reference, target, exporter, iface, family, example_sizes, check_sizes)
        for facts, export_facts, shared in exported:
            if shared is not None:
                if target.precision != runtime.quantized:  # a quantized skill validated its own graph, not fp32
                    shared.store(export_facts)
                facts["shared_export"] = shared.manifest_facts()
    facts = exported[0][0]
    if len(graphs) > 1:
        encoder_file = graphs[1][-1]
        facts["encoder"] = {
            **exported[1][0],
            "file": encoder_file.name,
            "bytes": encoder_file.stat().st_size,
            "sha256": file_sha256(encoder_file),
        }
    if graph_inputs is not module.INPUTS:  # the graph takes a cache: the forward's own outputs give the shapes
        forward = module.make_inputs(example_sizes["batch"], example_sizes.get("seq"), seed=0)
        with silenced_output():
            example_outputs = module.run_reference(reference, module.check_inputs(forward))
    validation["outputs"] = _shapes(example_sizes, example_outputs, check_sizes, validation["outputs"])
    return facts, validation


def _export_graph(
    stack: ExitStack,
    graph: Any,
    specs: dict[str, Any],
    example: dict[str, Any],
    output_names: list[str],
    artifact: Path,
    *,
    exporter: str,
    target: Target,
    identity: dict[str, Any],
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """One graph exported to `artifact` (or taken from the shared export cache, held in `stack` until
    validated): (its facts, the facts of the fp32 export, the shared export or None)."""
    runtime = runtime_spec(target.runtime)
    onnx_runtime = runtime.graph == "onnx"
    shared = None
    if onnx_runtime:
        key = _export_key(identity, exporter, example, specs, output_names)
        shared = stack.enter_context(shared_export(key, artifact))
    started = time.perf_counter()
    if shared is not None and shared.reused:
        progress(f"export {artifact.name} ({exporter}: the shared export, reused)", 0.3)
        facts = dict(shared.meta["facts"])
    else:
        progress(f"export {artifact.name} ({exporter})", 0.3)
        with silenced_output():
            facts = export(
                graph,
                example,
                specs,
                output_names,
                exporter,
                artifact,
                device="cpu" if onnx_runtime else target.torch_device,
                dtype="float32" if onnx_runtime else TORCH_DTYPES[target.precision],
            )
    facts["export_s"] = round(time.perf_counter() - started, 3)
    export_facts = dict(facts)
    if target.precision == runtime.quantized:
        with silenced_output():
            facts.update(quantize_int8(artifact))
        facts["export_s"] = round(time.perf_counter() - started, 3)
    return facts, export_facts, shared


def _graph_example(module: ModuleType, sizes: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the exported graph's input specs, its export example): the forward's inputs, and for a skill that
    decodes with a KV cache the past key/values too (the graph takes them, a forward call gives none)."""
    if hasattr(module, "GRAPH_INPUTS"):
        return module.GRAPH_INPUTS, module.graph_example(sizes["batch"], sizes.get("seq"), seed=0)
    return module.INPUTS, module.check_inputs(module.make_inputs(sizes["batch"], sizes.get("seq"), seed=0))


def _check_cache_sizes(module: ModuleType, outputs: dict[str, Any]) -> None:
    """The present key/values the reference returns have the sizes the skill's cache was made with."""
    if not hasattr(module, "PRESENT_NAMES"):
        return
    cache = module.CACHE
    for name in module.PRESENT_NAMES:
        shape = outputs[name].shape if name in outputs else None
        if shape is None or (shape[1], shape[3]) != (cache["kv_heads"], cache["head_dim"]):
            raise GenerationError(
                f"the model's cache output {name} has shape {shape}, not (batch, {cache['kv_heads']} kv heads, "
                f"positions, {cache['head_dim']}) as its config says"
            )


def _validate(
    module: ModuleType,
    reference: Any,
    target: Target,
    exporter: str,
    iface: Interface,
    family: str,
    example_sizes: dict[str, int],
    check_sizes: dict[str, int],
) -> dict[str, Any]:
    """The skill against the reference on shapes the export never saw, and on a single row."""
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
        tokens_equal = cache = None
        if iface.generation is not None and target.precision == "fp32":
            # Two prompts, the second padded as the family pads (batched generation must not see the padding).
            prompt = pad_second_row(
                module.make_inputs(2, example_sizes.get("seq"), seed=2),
                iface.generation["pad_token_id"],
                left=family == "text-generation",
            )
            got = skill.generate(prompt, _GENERATION_CHECK_TOKENS)
            want = skill.reference_generate(prompt, _GENERATION_CHECK_TOKENS)
            tokens_equal = got.shape == want.shape and bool((got == want).all())
            if not tokens_equal:
                raise GenerationError(
                    f"greedy tokens differ from transformers' generate: {got.tolist()} vs {want.tolist()}"
                )
            if iface.generation.get("kv_cache"):
                try:
                    cache = cache_consistency(skill, skill.reference, prompt, tolerance)
                except Verdict as verdict:
                    raise GenerationError(f"{exporter} export: {verdict}") from None
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
        "kv_cache": None if cache is None else {"max_abs_diff": cache["max_abs_diff"], **cache["details"]},
        "validate_s": round(time.perf_counter() - started, 3),
        "outputs": outputs,
    }
    return validation


def _build(
    model: ResolvedModel,
    target: Target,
    template: templates.TemplateInfo,
    iface: Interface,
    skill_id: str,
    staging: Path,
    progress: Progress,
    device_guard: DeviceGuard,
) -> dict[str, Any]:
    """Render, export and validate into `staging`; returns the manifest. Raises GenerationError.

    `device_guard` is held while the work runs on the target's device: the validation, and for torch
    on an accelerator everything (its reference and its export run there too).
    """
    _copy_assets(model.path, staging / "assets")
    attempts: list[_Attempt] = []
    reference = None
    identity = {
        "model_revision": model.revision,
        "architecture": model.architecture,
        "task": model.task,
        "template": template.name,
        "template_version": template.version,
        "template_digest": templates.source_digest(),
        "exporters_digest": export_source_digest(),
        "generator_version": GENERATOR_VERSION,
    }
    on_device = target.runtime == "torch" and target.torch_device != "cpu"
    whole_guard, validation_guard = (device_guard, _no_guard) if on_device else (_no_guard, device_guard)
    cache = (iface.generation or {}).get("kv_cache") or {}
    cached_decoder = bool(cache) and not cache["encoder_decoder"]
    exporters = runtime_spec(target.runtime).exporters_for(target.hardware, cached_decoder)
    for number, (exporter, artifact_name) in enumerate(exporters):
        progress("render skill.py", 0.1)
        source = templates.render(template, render_context(model, target, template, iface, artifact_name))
        (staging / "skill.py").write_text(source)
        module_name = f"_accel_skill_{skill_id}_{number}"
        module = import_skill(staging / "skill.py", module_name)
        artifact = staging / artifact_name
        try:
            with whole_guard():
                if reference is None or target.runtime == "torch":
                    progress("load the reference model", 0.2)
                    dtype = TORCH_DTYPES[target.precision] if target.runtime == "torch" else "float32"
                    device = target.torch_device if target.runtime == "torch" else "cpu"
                    with MODEL_LOADING:
                        reference = module.build_reference(dtype=dtype, device=device)
                facts, validation = _try_exporter(
                    module,
                    reference,
                    target,
                    exporter,
                    artifact,
                    iface,
                    model.family,
                    identity,
                    progress,
                    validation_guard,
                )
        except Exception as err:  # any exporter failure: record it, clean up, try the next one
            attempts.append(_Attempt(exporter=exporter, error=f"{type(err).__name__}: {err}"[:2000]))
            for leftover in [*staging.glob("model.*"), *staging.glob("encoder.*")]:
                leftover.unlink()
            continue
        finally:
            sys.modules.pop(module_name, None)
        attempts.append(_Attempt(exporter=exporter))
        facts.update(
            file=artifact_name,
            bytes=sum(path.stat().st_size for path in artifact_files(artifact)),  # with the weights beside it
            sha256=file_sha256(artifact),
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
        generation = {**iface.generation, "strategy": "greedy", "note": _generation_note(iface.generation)}
        if generation.get("kv_cache"):  # the graph's own cache dtype: a torch program's is its precision's
            dtype = TORCH_DTYPES[target.precision] if runtime_spec(target.runtime).graph == "torch" else "float32"
            generation["kv_cache"] = {**generation["kv_cache"], "dtype": dtype}
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
            "weights_note": model.weights_note,
        },
        "target": {
            "target": str(target),
            "hardware": target.hardware,
            "runtime": target.runtime,
            "precision": target.precision,
            "device": target.device,
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


def _generation_note(generation: dict[str, Any]) -> str:
    cache = generation.get("kv_cache")
    if not cache:
        return "no KV cache: every step runs the graph on the whole sequence"
    what = "decoder self-attention and cross-attention" if cache["encoder_decoder"] else "every layer's"
    return (
        f"KV cache ({cache['layout']}): prefill runs the prompt once, then each decode step runs one token "
        f"per row with {what} past keys and values"
    )


def _clear_stale_staging(out_dir: Path) -> None:
    for stale in out_dir.glob(".staging-*"):
        if time.time() - stale.stat().st_mtime > _STALE_STAGING_S:
            shutil.rmtree(stale, ignore_errors=True)


def _publish(staging: Path, final: Path, *, replace: bool) -> bool:
    """Move the finished skill into place in one rename; a forced regeneration (`replace`) retires the old one.

    False when another process published the same skill while this one made it: the same inputs give the
    same bytes, so the first one stays (replacing it would pull the folder from under whoever reads it).
    """
    if final.exists():
        if not replace:
            return False
        retired = final.with_name(f".retired-{final.name}-{uuid.uuid4().hex[:8]}")
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
        return True
    try:
        staging.rename(final)
    except OSError as err:  # published by another process since the check above
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or replace:
            raise
        return False
    return True


def generate(
    ref: str | ResolvedModel,
    target: str | Target,
    *,
    out_dir: Path | None = None,
    force: bool = False,
    progress: Progress = _quiet,
    device_guard: DeviceGuard | None = None,
) -> GeneratedSkill:
    """Generate (or reuse) the skill for `ref` on `target`.

    `device_guard`, when given, is entered around the work that runs on the target's device: the
    pipeline passes the device slot when it generates beside a benchmark on that device.

    Raises ModelRefError / UnsupportedModelError / TargetError / UnsupportedTargetError for requests
    that cannot be served, GenerationError when generation ran and no exporter produced a skill that
    matches the reference.
    """
    started, started_at = time.perf_counter(), datetime.now(UTC).isoformat()
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
            manifest = _build(model, target, template, iface, skill_id, staging, progress, device_guard or _no_guard)
        manifest["started_at"] = started_at
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        progress("publish", 0.95)
        published = _publish(staging, final, replace=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("done", 1.0)
    if not published:
        manifest = json.loads((final / "manifest.json").read_text())
    return GeneratedSkill(
        skill_id=skill_id, path=final, reused=not published, manifest=manifest, seconds=manifest["seconds"]
    )


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
