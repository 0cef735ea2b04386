"""Family and task of a model, read from its config through transformers' own auto-class mappings.

No list of model names is kept here: a model's architecture class (config.architectures) is looked
up in the mappings behind transformers' `AutoModelFor...` classes, so every architecture transformers
knows is classified the way transformers itself would load it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel
from transformers.models.auto import modeling_auto

from accel.tasks.errors import UnsupportedModelError

Family = Literal["text-encoder", "text-generation", "text2text", "vision", "speech", "vision-text"]
FAMILIES: tuple[str, ...] = get_args(Family)

# (task, family, auto class, mapping) in priority order: an architecture listed in several mappings
# takes the first (Gemma3ForConditionalGeneration is both image-text-to-text and a causal LM).
_TASKS: list[tuple[str, str, str, str]] = [
    ("automatic-speech-recognition", "speech", "AutoModelForSpeechSeq2Seq", "SPEECH_SEQ_2_SEQ"),
    ("automatic-speech-recognition", "speech", "AutoModelForCTC", "CTC"),
    ("audio-classification", "speech", "AutoModelForAudioClassification", "AUDIO_CLASSIFICATION"),
    (
        "audio-frame-classification",
        "speech",
        "AutoModelForAudioFrameClassification",
        "AUDIO_FRAME_CLASSIFICATION",
    ),
    ("audio-xvector", "speech", "AutoModelForAudioXVector", "AUDIO_XVECTOR"),
    (
        "zero-shot-image-classification",
        "vision-text",
        "AutoModelForZeroShotImageClassification",
        "ZERO_SHOT_IMAGE_CLASSIFICATION",
    ),
    ("image-text-to-text", "vision-text", "AutoModelForImageTextToText", "IMAGE_TEXT_TO_TEXT"),
    (
        "visual-question-answering",
        "vision-text",
        "AutoModelForVisualQuestionAnswering",
        "VISUAL_QUESTION_ANSWERING",
    ),
    ("text2text-generation", "text2text", "AutoModelForSeq2SeqLM", "SEQ_TO_SEQ_CAUSAL_LM"),
    ("text-generation", "text-generation", "AutoModelForCausalLM", "CAUSAL_LM"),
    ("image-classification", "vision", "AutoModelForImageClassification", "IMAGE_CLASSIFICATION"),
    ("object-detection", "vision", "AutoModelForObjectDetection", "OBJECT_DETECTION"),
    ("image-segmentation", "vision", "AutoModelForSemanticSegmentation", "SEMANTIC_SEGMENTATION"),
    ("image-segmentation", "vision", "AutoModelForUniversalSegmentation", "UNIVERSAL_SEGMENTATION"),
    ("depth-estimation", "vision", "AutoModelForDepthEstimation", "DEPTH_ESTIMATION"),
    ("fill-mask", "text-encoder", "AutoModelForMaskedLM", "MASKED_LM"),
    ("text-classification", "text-encoder", "AutoModelForSequenceClassification", "SEQUENCE_CLASSIFICATION"),
    ("token-classification", "text-encoder", "AutoModelForTokenClassification", "TOKEN_CLASSIFICATION"),
    ("question-answering", "text-encoder", "AutoModelForQuestionAnswering", "QUESTION_ANSWERING"),
]

# A bare backbone (BertModel, WhisperModel, ViTModel) is driven as a feature extractor; its family
# is the modality of its model type, taken from which task mappings list that type (first match wins).
_MODALITIES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "speech",
        "feature-extraction",
        ("SPEECH_SEQ_2_SEQ", "CTC", "AUDIO_CLASSIFICATION", "AUDIO_FRAME_CLASSIFICATION", "AUDIO_XVECTOR"),
    ),
    (
        "vision-text",
        "feature-extraction",
        ("ZERO_SHOT_IMAGE_CLASSIFICATION", "IMAGE_TEXT_TO_TEXT", "VISUAL_QUESTION_ANSWERING"),
    ),
    ("text2text", "feature-extraction", ("SEQ_TO_SEQ_CAUSAL_LM",)),
    (
        "vision",
        "image-feature-extraction",
        ("IMAGE", "IMAGE_CLASSIFICATION", "OBJECT_DETECTION", "SEMANTIC_SEGMENTATION", "DEPTH_ESTIMATION"),
    ),
    (
        "text-encoder",
        "feature-extraction",
        (
            "MASKED_LM",
            "CAUSAL_LM",
            "SEQUENCE_CLASSIFICATION",
            "TOKEN_CLASSIFICATION",
            "QUESTION_ANSWERING",
            "TEXT_ENCODING",
        ),
    ),
]


class FamilyInfo(BaseModel):
    family: Family
    task: str
    architecture: str
    model_type: str
    auto_class: str


def _mapping(name: str) -> dict[str, Any]:
    return getattr(modeling_auto, f"MODEL_FOR_{name}_MAPPING_NAMES", {})


def _classes(mapping: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in mapping.values():
        found.update(value if isinstance(value, tuple) else (value,))
    return found


def _base_architecture(model_type: str) -> str | None:
    base = modeling_auto.MODEL_MAPPING_NAMES.get(model_type)
    return base[0] if isinstance(base, tuple) else base


def detect_family(config: Any) -> FamilyInfo:
    """Family, task and loading class of a `transformers.PretrainedConfig`."""
    model_type = getattr(config, "model_type", None) or ""
    architectures = list(getattr(config, "architectures", None) or [])
    architecture = architectures[0] if architectures else _base_architecture(model_type)
    if architecture is None:
        raise UnsupportedModelError(
            f"model type {model_type or '(none)'!r} names no architecture transformers knows; "
            f"accel drives these families: {', '.join(FAMILIES)}"
        )
    for task, family, auto_class, mapping in _TASKS:
        if architecture in _classes(_mapping(mapping)):
            return FamilyInfo(
                family=family,
                task=task,
                architecture=architecture,
                model_type=model_type,
                auto_class=auto_class,
            )
    if architecture in _classes(modeling_auto.MODEL_MAPPING_NAMES):
        for family, task, mappings in _MODALITIES:
            if any(model_type in _mapping(m) for m in mappings):
                return FamilyInfo(
                    family=family,
                    task=task,
                    architecture=architecture,
                    model_type=model_type,
                    auto_class="AutoModel",
                )
    if architecture in _classes(_mapping("TEXT_ENCODING")):  # encoder halves: T5EncoderModel, ...
        return FamilyInfo(
            family="text-encoder",
            task="feature-extraction",
            architecture=architecture,
            model_type=model_type,
            auto_class="AutoModelForTextEncoding",
        )
    raise UnsupportedModelError(
        f"architecture {architecture} (model type {model_type!r}) is outside the families accel drives: "
        f"{', '.join(FAMILIES)}"
    )
