"""Skills for every tiny family model on every CPU runtime: generated, standalone, and right."""

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accel.hardware import Target, TargetError, detect, target_status
from accel.tasks.errors import GenerationError, UnsupportedTargetError
from accel.tasks.generate import generate, template_catalogue
from accel.tasks.generate_stage import generate_skill
from accel.tasks.tolerances import Tolerance, compare_outputs, tolerance_for
from tests.tiny_models import TINY_MODELS

RUNTIMES = ["cpu/torch", "cpu/onnxruntime", "cpu/openvino"]
CASES = [(name, target) for name in TINY_MODELS for target in RUNTIMES]


def load_skill(path: Path):
    """Import a generated skill.py as a module of its own."""
    name = f"skill_under_test_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path / "skill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tiny_skill):
    """Every case generated (what generate() makes, in an isolated process each, two at a time)."""
    tiny_skill.all(CASES)
    return tiny_skill


@pytest.mark.parametrize(("name", "target"), CASES)
def test_the_skill_generates_with_a_complete_manifest(generated, name, target):
    skill = generated(name, target)
    files = {p.name for p in skill.path.iterdir()}
    assert {"skill.py", "manifest.json", "assets"} <= files
    manifest = json.loads((skill.path / "manifest.json").read_text())
    # OpenVINO runs a decoder with a KV cache as its stateful IR (weights in model.bin); others run ONNX
    stateful = target == "cpu/openvino" and bool((manifest.get("generation") or {}).get("kv_cache"))
    stateful = stateful and not manifest["generation"]["kv_cache"]["encoder_decoder"]
    assert ("model.onnx" in files) == (target != "cpu/torch" and not stateful)
    assert {"model.xml", "model.bin"} <= files if stateful else "model.xml" not in files
    assert manifest["skill_id"] == skill.skill_id == skill.path.name
    assert manifest["model"]["family"] == TINY_MODELS[name].family
    assert manifest["target"]["target"] == target
    assert manifest["artifact"]["file"] in files and manifest["inputs"] and manifest["outputs"]
    assert manifest["validation"]["max_abs_diff"] <= 1e-3
    assert manifest["validation"]["check"] != manifest["validation"]["example"]
    if TINY_MODELS[name].family in ("text-generation", "text2text") or name == "whisper":
        cache = manifest["generation"]["kv_cache"]
        if TINY_MODELS[name].family in ("text-generation", "text2text"):
            assert cache["layers"] == 2 and cache["layout"] == "past_key_values inputs/outputs"
            # an encoder-decoder's cross-attention cache stays as its encoder made it
            grown = [0, 1] if cache["encoder_decoder"] else [1]
            assert manifest["validation"]["kv_cache"]["positions_added_per_step"] == grown
        else:
            assert cache is False
        assert manifest["validation"]["generation_tokens_equal"] is True


# One runtime per model, in turn: parity of every model on every runtime against accel's own reference is
# the comprehensive matrix's (tests/tasks/test_validate.py); these check the skill on its own: its own
# reference, and `python -I skill.py` with no accel to import (each family and each runtime at least once).
ROTATION = [(name, RUNTIMES[i % len(RUNTIMES)]) for i, name in enumerate(TINY_MODELS)]
# What a skill may import: the standard library, numpy, the runtime it runs on, and what its reference needs.
SKILL_IMPORTS = set(sys.stdlib_module_names) | {"numpy", "torch", "transformers", "onnxruntime", "openvino"}


@pytest.fixture(scope="module")
def standalone_runs(tiny_skill, python_without_accel):
    """`python -I skill.py` for each case of the rotation, two at a time (each mostly waits on imports)."""

    def run(case):
        return subprocess.run(
            [str(python_without_accel), "-I", "skill.py"],
            cwd=tiny_skill(*case).path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    tiny_skill.all(ROTATION)  # generated first; then only the runs overlap
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(ROTATION, pool.map(run, ROTATION), strict=True))


@pytest.mark.parametrize(("name", "target"), ROTATION)
def test_skill_py_runs_standalone_where_accel_cannot_be_imported(standalone_runs, name, target):
    result = standalone_runs[name, target]
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"on {target}" in result.stdout and "output " in result.stdout


def imported_modules(source: str) -> set[str]:
    """The top-level modules a Python source imports anywhere (in functions too), or asks importlib for."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." if node.level else node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            found.add(ast.unparse(node))  # a dynamic import is never one of the allowed names
    return found


def test_imported_modules_sees_every_way_to_import():
    source = "import a.b\nfrom c.d import e\nfrom . import f\ndef g():\n    import accel\nimportlib.import_module('h')"
    assert imported_modules(source) == {"a", "c", ".", "accel", "importlib.import_module('h')"}


@pytest.mark.parametrize(("name", "target"), CASES)
def test_every_skill_imports_only_the_standard_library_numpy_and_its_runtimes(generated, name, target):
    source = (generated(name, target).path / "skill.py").read_text()
    assert imported_modules(source) <= SKILL_IMPORTS, imported_modules(source) - SKILL_IMPORTS


@pytest.mark.parametrize(("name", "target"), ROTATION)
def test_outputs_match_the_reference_model_on_new_inputs(tiny_skill, name, target):
    generated = tiny_skill(name, target)
    module = load_skill(generated.path)
    with module.Skill() as skill:
        inputs = skill.make_inputs(2, 24)
        comparison = compare_outputs(
            skill(inputs),
            skill.reference(inputs),
            tolerance_for(TINY_MODELS[name].family, target.split("/")[1], "fp32"),
        )
    assert comparison.passed, comparison.message


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_preprocess_turns_real_data_into_a_valid_forward_pass(tiny_skill, name):
    import numpy as np
    from PIL import Image

    module = load_skill(tiny_skill(name, "cpu/onnxruntime").path)
    image = Image.fromarray((np.arange(40 * 48 * 3) % 251).astype("uint8").reshape(40, 48, 3))
    audio = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    raw = {
        "text-encoder": ["A man is eating food.", "A dog."],
        "text-generation": ["hello world", "the cat"],
        "text2text": ["translate: hello world"],
        "vision": [image, image],
        "speech": [audio, audio[:8000]],
        "vision-text": {"text": ["a cat", "a dog"], "images": [image, image]},
    }[TINY_MODELS[name].family]
    with module.Skill() as skill:
        inputs = skill.preprocess(raw)
        outputs = skill(inputs)
    assert set(inputs) == set(module.INPUTS)
    assert all(np.isfinite(v).all() for v in outputs.values())


def test_generating_again_reuses_the_skill_and_force_rebuilds_the_same_bytes(tiny_models, tmp_path):
    tmp_path = tmp_path / "skills"
    first = generate(str(tiny_models["bert"]), "cpu/onnxruntime", out_dir=tmp_path)
    again = generate(str(tiny_models["bert"]), "cpu/onnxruntime", out_dir=tmp_path)
    assert again.reused and not first.reused and again.skill_id == first.skill_id
    skill_py = (first.path / "skill.py").read_bytes()
    onnx = (first.path / "model.onnx").read_bytes()
    forced = generate(str(tiny_models["bert"]), "cpu/onnxruntime", out_dir=tmp_path, force=True)
    assert not forced.reused and forced.skill_id == first.skill_id
    assert (forced.path / "skill.py").read_bytes() == skill_py
    assert (forced.path / "model.onnx").read_bytes() == onnx  # the TorchScript exporter is deterministic
    assert [p.name for p in tmp_path.iterdir()] == [first.skill_id]  # nothing left behind
    other = generate(str(tiny_models["bert"]), "cpu/openvino", out_dir=tmp_path)
    assert other.skill_id != first.skill_id


@pytest.mark.parametrize(
    "hostile",
    [
        'x"); import os; os.system("touch PWNED"); #',
        "__import__('os').system('touch PWNED')",
        'back\\slash\'"\nnewline""" {{ jinja }}',
    ],
)
def test_hostile_paths_end_up_as_inert_literals(tiny_models, tmp_path, hostile):
    model_dir = tmp_path / hostile
    shutil.copytree(tiny_models["bert"], model_dir)
    skill = generate(str(model_dir), "cpu/onnxruntime", out_dir=tmp_path / "skills")
    source = (skill.path / "skill.py").read_text()
    tree = ast.parse(source)
    constants = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(constants["MODEL_DIR"]) == str(model_dir)
    assert ast.literal_eval(constants["MODEL_REF"]) == str(model_dir)
    result = subprocess.run(
        [sys.executable, "-I", "skill.py"], cwd=skill.path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(skill.path.rglob("PWNED")) and not list(tmp_path.rglob("PWNED"))
    module = load_skill(skill.path)
    with module.Skill() as loaded:  # the reference really loads from that path
        assert loaded.reference(loaded.make_inputs(1, 4))


def test_generated_code_is_ruff_clean(tiny_skill):
    ruff = Path(sys.executable).with_name("ruff")
    paths = [str(tiny_skill(name, target).path / "skill.py") for name, target in CASES]
    result = subprocess.run(
        [str(ruff), "check", "--isolated", "--line-length", "120", "--select", "E,F,W,I,B,UP,SIM", *paths],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_failed_generation_leaves_nothing_behind(tiny_models, tmp_path, monkeypatch):
    tmp_path = tmp_path / "skills"
    # No export can meet a zero tolerance on ONNX Runtime: every exporter is tried, then it fails.
    monkeypatch.setattr("accel.tasks.generate.tolerance_for", lambda *args: Tolerance(atol=0.0, rtol=0.0))
    with pytest.raises(GenerationError) as err:
        generate(str(tiny_models["vit"]), "cpu/onnxruntime", out_dir=tmp_path)
    assert "torchscript" in str(err.value) and "dynamo" in str(err.value) and "differs" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_requests_that_cannot_be_served_are_refused_with_what_is_supported(tiny_models, tmp_path):
    if sys.platform != "darwin":  # no Metal device outside macOS: the reason must say so
        with pytest.raises(UnsupportedTargetError, match=r"cannot run on this machine.*MPS"):
            generate(str(tiny_models["bert"]), "mps/torch:fp16", out_dir=tmp_path)
    with pytest.raises(TargetError, match="supported: fp32, bf16"):
        generate(str(tiny_models["bert"]), "cpu/torch:fp16", out_dir=tmp_path)
    detector = tmp_path / "detr"
    from transformers import AutoConfig

    AutoConfig.for_model("detr", architectures=["DetrForObjectDetection"]).save_pretrained(detector)
    with pytest.raises(UnsupportedTargetError, match="image-classification, image-feature-extraction"):
        generate(str(detector), "cpu/onnxruntime", out_dir=tmp_path / "skills")
    assert not (tmp_path / "skills").exists() or not list((tmp_path / "skills").iterdir())


@pytest.mark.parametrize("target", ["cpu/torch:bf16", "cpu/onnxruntime:int8", "cpu/openvino:bf16"])
def test_half_and_int8_precisions_generate_within_their_tolerances_or_are_refused(tiny_models, tmp_path, target):
    """What this machine runs comes from `target_status` (AVX2-only CPUs lack OpenVINO bf16): an available
    lower precision generates and really applies; one the machine lacks is refused with the reason."""
    status = target_status(Target.parse(target), detect())
    if not status.available:
        with pytest.raises(UnsupportedTargetError, match="cannot run on this machine") as refused:
            generate(str(tiny_models["gpt2"]), target, out_dir=tmp_path / "skills")
        assert status.reason in str(refused.value)
        assert not (tmp_path / "skills").exists()
        return
    skill = generate(str(tiny_models["gpt2"]), target, out_dir=tmp_path)
    validation = skill.manifest["validation"]
    precision = target.split(":")[1]
    assert validation["tolerance"]["atol"] == tolerance_for("text-generation", "", precision).atol
    assert validation["max_abs_diff"] > 0, "a lower precision that matches fp32 exactly was not applied"


def test_a_cpu_without_native_bf16_refuses_openvino_bf16_with_the_reason(tiny_models, tmp_path, monkeypatch):
    """The AVX2-only case, on any machine: OpenVINO's CPU reports no BF16 capability."""
    profile = detect().model_copy(deep=True)
    profile.runtimes["openvino"].precisions["cpu"] = ["fp32"]
    monkeypatch.setattr("accel.tasks.generate.detect", lambda: profile)
    with pytest.raises(UnsupportedTargetError, match=r"cannot run on this machine.*runs only fp32"):
        generate(str(tiny_models["gpt2"]), "cpu/openvino:bf16", out_dir=tmp_path / "skills")
    assert not (tmp_path / "skills").exists()


def test_the_prefect_task_generates_and_records_the_skill(tiny_models, tmp_path, accel_home):
    from prefect import Task

    from accel.settings import get_settings
    from accel.storage import ResultsStore

    assert isinstance(generate_skill, Task)
    skill = generate_skill.fn(str(tiny_models["vit"]), "cpu/openvino", out_dir=str(tmp_path))
    record = ResultsStore(get_settings().results_path).get_skill(skill.skill_id)
    assert record.target == "cpu/openvino" and record.family == "vision" and record.path == str(skill.path)


def test_the_catalogue_is_read_from_the_templates():
    entries = {e.family: e for e in template_catalogue()}
    assert set(entries) == {m.family for m in TINY_MODELS.values()}
    for entry in entries.values():
        assert set(entry.runtimes) == {"torch", "onnxruntime", "openvino"}
        assert {"cpu/torch", "cpu/onnxruntime", "cpu/openvino"} <= set(entry.targets_here)
        assert "cuda" in entry.hardware["torch"] and "xpu" in entry.hardware["openvino"]
    assert "text2text-generation" in entries["text2text"].tasks


def test_generating_in_parallel_threads_leaves_later_model_loads_whole(tiny_models, tmp_path):
    """transformers' loading flips process-wide state; two threads at once once left later models on meta."""
    import threading

    import transformers

    errors = []

    def make(name):
        try:
            # OpenVINO: its exports are the quickest (the bug was in loading, the same for every runtime)
            generate(str(tiny_models[name]), "cpu/openvino", out_dir=tmp_path / "skills", force=True)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=make, args=(name,)) for name in ("gpt2", "t5", "vit")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_models["gpt2"])
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_two_processes_generating_one_skill_at_once_both_get_it_whole(tiny_models, tmp_path):
    """The second to finish keeps the first one's folder (same inputs, same bytes) instead of pulling it from
    under whoever already reads it; neither fails, and no staging folder is left behind."""
    from accel.tasks.generate_stage import generate_isolated

    out = tmp_path / "skills"
    ref = str(tiny_models["bert"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: generate_isolated(ref, "cpu/openvino", out_dir=str(out)), range(2))
    assert first.skill_id == second.skill_id and first.path == second.path
    assert sorted([first.reused, second.reused]) == [False, True]
    assert [p.name for p in out.iterdir()] == [first.skill_id]
    assert json.loads((first.path / "manifest.json").read_text())["skill_id"] == first.skill_id
