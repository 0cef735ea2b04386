"""Whether accel can drive a model: the refusals made when it resolves, each with its reason.

`detect_family` says which family transformers' auto mappings put a model in. This says whether
accel's template for that family can drive it, read from what the skill would be made of: the
template's tasks, the interface accel builds from the config and forward signature, and what the
model's own tokenizer, image processor or feature extractor actually returns when called the way the
skill's `preprocess` calls it. A model that no template drives correctly is refused here, before
anything is generated, never found out later by a check that ends in `error`.

No model names: every rule reads the model's own files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from accel.tasks.errors import UnsupportedModelError, UnsupportedTargetError

# Files a tokenizer, processor or feature extractor is saved in (any one means there is one).
_PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "preprocessor_config.json",
    "processor_config.json",
)
_PROBE_TEXTS = ["the model runs fast on a small test", "hello world"]
_PROBE_RATE = 16000


class UndrivableModelError(UnsupportedModelError, UnsupportedTargetError):
    """A model in a family accel drives, that accel's template for that family cannot drive.

    Also an UnsupportedTargetError: a task the family template lacks was refused by the generator
    (as no template for the target) before resolution refused it, and callers catch it as that.
    """


def _template_tasks(family: str) -> tuple[str, tuple[str, ...]] | None:
    from accel.tasks import templates

    info = templates.catalogue().get(family)
    return None if info is None else (info.name, info.tasks)


def _task_rule(family: str, task: str) -> str | None:
    found = _template_tasks(family)
    if found is None:
        return f"accel has no template for the {family} family"
    name, tasks = found
    if task not in tasks:
        return f"template {name} (family {family}) does not drive task {task}; it drives: {', '.join(tasks)}"
    return None


def _class_rule(architecture: str) -> str | None:
    import transformers

    try:
        getattr(transformers, architecture)
    except (AttributeError, ImportError) as err:
        return (
            f"accel's templates load the model class from transformers, which has no {architecture} "
            f"({type(err).__name__}: it is the model's own code, or needs a library not installed)"
        )
    return None


def _image_size(config: Any) -> Any:
    return getattr(config, "image_size", None)


def _config_rule(family: str, config: Any) -> str | None:
    """What the interface needs to read from the config, said plainly before it would fail on it."""
    if family == "vision" and _image_size(config) is None:
        return (
            "its config states no image_size (only its image processor knows the size), and accel's vision "
            "interface takes the model's fixed input size from the config"
        )
    if family == "vision-text":
        vision = getattr(config, "vision_config", None)
        if vision is None or getattr(config, "text_config", None) is None:
            return "accel's vision-text interface drives a text tower and a vision tower (text_config, vision_config)"
        if _image_size(vision) is None:
            return "its vision config states no image_size, and accel's interface takes the input size from it"
    if family == "speech":
        whisper_window = getattr(config, "max_source_positions", None) and getattr(config, "num_mel_bins", None)
        if getattr(config, "conv_kernel", None) is None and not whisper_window:
            return (
                "accel's speech template drives raw waveforms through a convolutional feature encoder (input_values, "
                "conv_kernel in the config) and Whisper-style log-mel features in a fixed window (num_mel_bins x "
                "2 max_source_positions); this model takes neither (variable-length filter banks or spectrograms)"
            )
    return None


def _has_processor(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in _PROCESSOR_FILES)


def _images() -> list[Any]:
    """Two images of different sizes and aspect ratios: a processor that does not fix the size shows it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)),
    ]


def _fixed_dims(spec: dict[str, Any]) -> list[tuple[int, int]]:
    return [(axis, dim) for axis, dim in enumerate(spec["shape"]) if isinstance(dim, int)]


def _shape_mismatch(name: str, spec: dict[str, Any], value: Any, what: str) -> str | None:
    shape = np.shape(value)
    if len(shape) != len(spec["shape"]):
        return f"its {what} returns {name} of shape {list(shape)}; the interface feeds {spec['shape']}"
    for axis, dim in _fixed_dims(spec):
        if shape[axis] != dim:
            return (
                f"its {what} returns {name} of shape {list(shape)} (inputs of different sizes), but the "
                f"interface, read from the config, feeds a fixed {spec['shape']}"
            )
    return None


def _missing(returned: Any, wanted: list[str], what: str) -> str | None:
    keys = set(returned.keys())
    missing = [name for name in wanted if name not in keys]
    if missing:
        return (
            f"its {what} returns {sorted(keys)}, without {', '.join(missing)}, which accel's interface "
            "feeds the model: preprocess could not give the model's inputs"
        )
    return None


def _probe_text(model_dir: Path, iface: Any, family: str) -> str | None:
    from transformers import AutoTokenizer

    options = {"padding_side": "left"} if family == "text-generation" else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **options)
    if tokenizer.pad_token is None:
        if family != "text-generation":  # the text-generation template pads with the generation config's pad id
            return "its tokenizer has no pad token, so a batch of texts of different lengths cannot be padded"
        tokenizer.pad_token_id = (iface.generation or {}).get("pad_token_id", 0)
    limit = iface.dims.get("seq", {}).get("max")
    encoded = tokenizer(_PROBE_TEXTS, padding=True, truncation=True, max_length=limit, return_tensors="np")
    wanted = [n for n, spec in iface.inputs.items() if spec["kind"] in ("tokens", "mask") and "seq" in spec["shape"]]
    return _missing(encoded, wanted, f"tokenizer ({type(tokenizer).__name__})")


def _probe_vision(model_dir: Path, iface: Any) -> str | None:
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(model_dir)
    what = f"image processor ({type(processor).__name__})"
    encoded = processor(images=_images(), return_tensors="np")
    return _missing(encoded, ["pixel_values"], what) or _shape_mismatch(
        "pixel_values", iface.inputs["pixel_values"], encoded["pixel_values"], what
    )


def _probe_vision_text(model_dir: Path, iface: Any) -> str | None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    what = f"processor ({type(processor).__name__})"
    encoded = processor(text=_PROBE_TEXTS, images=_images(), padding=True, truncation=True, return_tensors="np")
    return _missing(encoded, list(iface.inputs), what) or _shape_mismatch(
        "pixel_values", iface.inputs["pixel_values"], encoded["pixel_values"], what
    )


def _probe_speech(model_dir: Path, iface: Any) -> str | None:
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    what = f"feature extractor ({type(extractor).__name__})"
    rate = iface.preprocess.get("sampling_rate", _PROBE_RATE)
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (rate, rate // 2)]
    if iface.preprocess.get("layout") == "features":
        encoded = extractor(waves, sampling_rate=rate, return_tensors="np")
        spec = iface.inputs["input_features"]
        return _missing(encoded, ["input_features"], what) or _shape_mismatch(
            "input_features", spec, encoded["input_features"], what
        )
    wants_mask = "attention_mask" in iface.inputs
    encoded = extractor(waves, sampling_rate=rate, padding=True, return_attention_mask=wants_mask, return_tensors="np")
    return _missing(encoded, list(iface.inputs), what)


_PROBES: dict[str, Callable[..., str | None]] = {
    "text-encoder": lambda d, i: _probe_text(d, i, "text-encoder"),
    "text-generation": lambda d, i: _probe_text(d, i, "text-generation"),
    "text2text": lambda d, i: _probe_text(d, i, "text2text"),
    "vision": _probe_vision,
    "vision-text": _probe_vision_text,
    "speech": _probe_speech,
}


def _interface(model: Any, config: Any) -> Any:
    from accel.tasks.interface import build_interface

    return build_interface(model, config)


def refusal(model: Any, config: Any) -> str | None:
    """Why accel cannot drive the resolved `model` (a ResolvedModel), or None when it can.

    The interface's own refusals (a generation setting greedy decoding does not implement) are reasons too.
    """
    reason = (
        _task_rule(model.family, model.task) or _class_rule(model.architecture) or _config_rule(model.family, config)
    )
    if reason:
        return reason
    try:
        iface = _interface(model, config)
    except UnsupportedModelError as err:
        return str(err)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        return (
            f"accel's {model.family} interface cannot read how to drive it from its config "
            f"({type(err).__name__}: {err})"
        )
    if not _has_processor(model.path):
        if model.parameters_source == "safetensors":
            return (
                "there is no tokenizer, image processor or feature extractor beside its weights, and the skill's "
                "preprocess (real text, images or audio) is its own processor"
            )
        return None  # a config alone describes the model; there is nothing to generate from yet
    try:
        return _PROBES[model.family](model.path, iface)
    except (ImportError, OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        return f"its own processor cannot be loaded or called the way preprocess calls it ({type(err).__name__}: {err})"


def check_drivable(model: Any, config: Any) -> None:
    """UndrivableModelError, with the reason, for a model accel cannot drive (see `refusal`)."""
    reason = refusal(model, config)
    if reason is not None:
        said = " ".join(reason.split())  # one line: the CLI prints it as its one line of error
        who = f"{model.architecture} (model type {model.model_type!r}, {model.family}, {model.task})"
        raise UndrivableModelError(f"{who} is refused: {said}"[:2000])
