"""Family and task detection, for every tiny model and for configs of many more architectures."""

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from accel.tasks.errors import ModelRefError, UnsupportedModelError
from accel.tasks.families import FAMILIES, detect_family
from accel.tasks.resolve import resolve_model
from tests.tiny_models import TINY_MODELS


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_every_tiny_model_resolves_to_its_family_and_task(name, tiny_models):
    spec = TINY_MODELS[name]
    model = resolve_model(str(tiny_models[name]))
    assert (model.family, model.task, model.architecture) == (spec.family, spec.task, spec.architecture)
    assert model.source == "local" and model.path == tiny_models[name].resolve()
    assert model.revision.startswith("sha256:") and model.parameters_source == "safetensors"
    assert 10_000 < model.parameters < 500_000


def test_the_tiny_models_cover_all_six_families():
    assert {m.family for m in TINY_MODELS.values()} == set(FAMILIES)


@pytest.mark.parametrize(
    ("model_type", "architecture", "family", "task"),
    [
        ("bert", None, "text-encoder", "feature-extraction"),
        ("roberta", "RobertaForMaskedLM", "text-encoder", "fill-mask"),
        ("distilbert", "DistilBertForSequenceClassification", "text-encoder", "text-classification"),
        ("t5", "T5EncoderModel", "text-encoder", "feature-extraction"),
        ("mistral", "MistralForCausalLM", "text-generation", "text-generation"),
        ("gpt2", None, "text-encoder", "feature-extraction"),
        ("bart", "BartForConditionalGeneration", "text2text", "text2text-generation"),
        ("deit", None, "vision", "image-feature-extraction"),
        ("detr", "DetrForObjectDetection", "vision", "object-detection"),
        ("hubert", None, "speech", "feature-extraction"),
        ("wav2vec2", "Wav2Vec2ForSequenceClassification", "speech", "audio-classification"),
        ("whisper", None, "speech", "feature-extraction"),
        ("siglip", None, "vision-text", "zero-shot-image-classification"),
        ("blip", "BlipForConditionalGeneration", "vision-text", "image-text-to-text"),
        # Listed both as a causal LM and as image-text-to-text: the multimodal reading wins.
        ("gemma3", "Gemma3ForConditionalGeneration", "vision-text", "image-text-to-text"),
    ],
)
def test_family_comes_from_the_transformers_auto_mappings(model_type, architecture, family, task):
    config = AutoConfig.for_model(model_type)
    if architecture:
        config.architectures = [architecture]
    info = detect_family(config)
    assert (info.family, info.task) == (family, task)


@pytest.mark.parametrize(
    ("model_type", "architecture"),
    [("patchtst", "PatchTSTForPrediction"), ("vits", None), ("decision_transformer", None)],
)
def test_architectures_outside_the_six_families_are_refused_naming_them(model_type, architecture):
    config = AutoConfig.for_model(model_type)
    if architecture:
        config.architectures = [architecture]
    with pytest.raises(UnsupportedModelError) as err:
        detect_family(config)
    assert all(family in str(err.value) for family in FAMILIES)


def _config_dir(tmp_path: Path, raw: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return tmp_path


def test_a_config_only_directory_counts_parameters_from_the_config(tmp_path):
    config = AutoConfig.for_model(
        "bert",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=1000,
    )
    config.save_pretrained(tmp_path)
    model = resolve_model(str(tmp_path))
    assert model.parameters_source == "config"
    from transformers import BertModel

    assert model.parameters == sum(p.numel() for p in BertModel(config).parameters())


def test_resolving_an_unsupported_architecture_fails_with_the_families(tmp_path):
    AutoConfig.for_model("patchtst", architectures=["PatchTSTForPrediction"]).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="text-encoder, text-generation"):
        resolve_model(str(tmp_path))


def test_remote_code_is_refused_unless_asked(tmp_path):
    d = _config_dir(tmp_path, {"model_type": "my-custom-arch", "auto_map": {"AutoModel": "modeling.MyModel"}})
    with pytest.raises(ModelRefError, match="--trust-remote-code"):
        resolve_model(str(d))


def test_unknown_model_type_and_broken_json_are_refused(tmp_path):
    with pytest.raises(ModelRefError, match="not known to transformers"):
        resolve_model(str(_config_dir(tmp_path / "a", {"model_type": "nonsense"})))
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelRefError, match="cannot read"):
        resolve_model(str(broken))
