"""What goes into a model and how it is driven: the data a skill template is rendered with.

Read from the model's config, its forward signature, its generation config and its processor
settings; nothing is looked up by model name.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accel.tasks.errors import UnsupportedModelError
from accel.tasks.resolve import ResolvedModel

DEFAULT_SEQ = 16  # the smoke test's sequence length when none is asked for
DEFAULT_FRAMES = 49  # speech: about one second of audio for 20 ms frames


@dataclass
class Interface:
    inputs: dict[str, dict[str, Any]]
    dims: dict[str, Any]
    preprocess: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] | None = None
    position_ids: bool = False
    use_cache: bool = False
    seq_meaning: str = "ignored: this model's input size is fixed"

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)


def _tokens(high: int, start: int | None = None) -> dict[str, Any]:
    """Token ids in [0, high); a decoder's (`start` given) have their own length axis and start token."""
    axis = "seq" if start is None else "decoder_seq"
    spec: dict[str, Any] = {
        "kind": "tokens",
        "dtype": "int64",
        "shape": ["batch", axis],
        "low": 0,
        "high": int(high),
    }
    if start is not None:
        spec["start"] = int(start)
    return spec


def _mask(axis: str = "seq") -> dict[str, Any]:
    return {"kind": "mask", "dtype": "int64", "shape": ["batch", axis]}


def _pixels(config: Any) -> dict[str, Any]:
    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return {
        "kind": "normal",
        "dtype": "float32",
        "shape": ["batch", int(getattr(config, "num_channels", 3)), int(height), int(width)],
    }


def _seq(default: int, maximum: int | None) -> dict[str, Any]:
    return {"default": min(default, maximum) if maximum else default, "min": 1, "max": maximum}


def _max_positions(config: Any, model_dir: Path) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_target_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    # Relative-position models (T5) have no hard limit: use the tokenizer's, when it states one.
    tokenizer_config = model_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        limit = json.loads(tokenizer_config.read_text()).get("model_max_length")
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            return limit
    return None


def _forward_parameters(architecture: str) -> set[str]:
    import transformers

    return set(inspect.signature(getattr(transformers, architecture).forward).parameters)


# Settings of a generation config that change greedy decoding and that the skill's `greedy` does not
# implement, with the value that means "off". A model that sets one is refused, never silently diverged from.
_UNSUPPORTED_GENERATION = {
    "bad_words_ids": None,
    "sequence_bias": None,
    "encoder_repetition_penalty": (None, 1.0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "exponential_decay_length_penalty": None,
    "guidance_scale": (None, 1.0),
    "stop_strings": None,
    "remove_invalid_values": (None, False),
    "max_time": None,
    "watermarking_config": None,
    "forced_decoder_ids": None,
    "force_words_ids": None,
    "constraints": None,
}


def _is_off(value: Any, off: Any) -> bool:
    return value in (off if isinstance(off, tuple) else (off,))


def _token_ids(value: Any) -> list[int]:
    return [int(t) for t in (value if isinstance(value, list | tuple) else [value]) if t is not None]


def _strategy(gen: Any) -> str:
    """What the model's config asks for; the skill always decodes greedily, and says so."""
    if gen.do_sample:
        return "sampling in the model's config; the skill decodes greedily"
    if (gen.num_beams or 1) > 1:
        return f"beam search ({gen.num_beams} beams) in the model's config; the skill decodes greedily"
    return "greedy, as the model's config asks"


def _generation(model_dir: Path, config: Any, generates: bool = True, exempt: tuple[str, ...] = ()) -> dict[str, Any]:
    """The generation settings greedy decoding follows, read from the model's generation config.

    When the skill `generates`, UnsupportedModelError for a setting its greedy decoding does not
    implement. `exempt` names settings a template handles itself (Whisper's forced decoder ids become
    its decoder prompt).
    """
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # no generation_config.json: transformers derives one from the model config
        gen = GenerationConfig.from_model_config(config)
    refused = [
        f"{name}={getattr(gen, name)!r}"
        for name, off in _UNSUPPORTED_GENERATION.items()
        if name not in exempt and not _is_off(getattr(gen, name, None), off)
    ]
    if refused and generates:
        raise UnsupportedModelError(
            f"the generation config of {model_dir.name} sets {', '.join(refused)}, which accel's greedy "
            "decoding does not implement; it would generate other tokens than transformers' generate"
        )
    eos = gen.eos_token_id if gen.eos_token_id is not None else getattr(config, "eos_token_id", None)
    eos_ids = _token_ids(eos)
    pad = gen.pad_token_id if gen.pad_token_id is not None else getattr(config, "pad_token_id", None)
    if pad is None:
        pad = eos_ids[0] if eos_ids else 0
    penalty = float(gen.repetition_penalty if gen.repetition_penalty is not None else 1.0)
    if not penalty > 0:
        raise UnsupportedModelError(f"the generation config of {model_dir.name} sets repetition_penalty={penalty}")
    return {
        "eos_token_ids": eos_ids,
        "pad_token_id": int(pad),
        "forced_bos_token_id": None if gen.forced_bos_token_id is None else int(gen.forced_bos_token_id),
        "forced_eos_token_ids": _token_ids(gen.forced_eos_token_id),
        "suppress_tokens": [int(t) for t in (gen.suppress_tokens or [])],
        "begin_suppress_tokens": [int(t) for t in (gen.begin_suppress_tokens or [])],
        "no_repeat_ngram_size": int(gen.no_repeat_ngram_size or 0),
        "min_length": int(gen.min_length or 0),
        "min_new_tokens": int(gen.min_new_tokens) if gen.min_new_tokens else None,
        "repetition_penalty": penalty,
        "config_strategy": _strategy(gen),
        "kv_cache": False,  # or the sizes of the past key/values the skill decodes with (_kv_cache)
        "_config": gen,
    }


KV_CACHE_LAYOUT = "past_key_values inputs/outputs"
# Forward arguments that take the past key/values: `cache` since transformers 5.24, `past_key_values` before.
_CACHE_ARGUMENTS = ("cache", "past_key_values")


def _kv_cache(config: Any, params: set[str], encoder_decoder: bool) -> dict[str, Any] | None:
    """The past key/values the decoder's graph takes and returns, sized from the config (contract C1).

    None when the forward takes no cache. The dtype is the graph's float32 here; generation sets a torch
    target's own. The export checks the sizes: a graph whose present key/values differ is refused.
    """
    if not params.intersection(_CACHE_ARGUMENTS) or "use_cache" not in params:
        return None
    text = config.get_text_config(decoder=True)
    heads = int(text.num_attention_heads)
    layers = getattr(text, "num_decoder_layers", None) if encoder_decoder else None
    head_dim = getattr(text, "head_dim", None) or getattr(text, "d_kv", None) or text.hidden_size // heads
    return {
        "layers": int(layers or text.num_hidden_layers),
        "kv_heads": int(getattr(text, "num_key_value_heads", None) or heads),
        "head_dim": int(head_dim),
        "dtype": "float32",
        "encoder_decoder": encoder_decoder,
        "layout": KV_CACHE_LAYOUT,
    }


def _decoder_start(generation: dict[str, Any], config: Any) -> int:
    start = generation["_config"].decoder_start_token_id
    if start is None:
        start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = generation["pad_token_id"]
    return int(start[0] if isinstance(start, list) else start)


def _preprocessor_config(model_dir: Path) -> dict[str, Any]:
    """The feature extractor's settings: preprocessor_config.json, or inside processor_config.json."""
    for name, key in (("preprocessor_config.json", None), ("processor_config.json", "feature_extractor")):
        path = model_dir / name
        if path.is_file():
            settings = json.loads(path.read_text())
            settings = settings.get(key, {}) if key else settings
            if settings:
                return settings
    return {}


def _text(model: ResolvedModel, config: Any, params: set[str]) -> Interface:
    seq = _seq(DEFAULT_SEQ, _max_positions(config, model.path))
    inputs = {"input_ids": _tokens(config.vocab_size)}
    if "attention_mask" in params:
        inputs["attention_mask"] = _mask()
    iface = Interface(inputs=inputs, dims={"seq": seq}, seq_meaning="the number of tokens")
    if model.family == "text-generation":
        gen = _generation(model.path, config)
        gen["kv_cache"] = _kv_cache(config, params, encoder_decoder=False) or False
        iface.generation = gen
        iface.position_ids = "position_ids" in params and "attention_mask" in inputs
    elif model.family == "text2text":
        gen = _generation(model.path, config, generates=model.task == "text2text-generation")
        prompt = [_decoder_start(gen, config)]
        inputs["decoder_input_ids"] = _tokens(config.vocab_size, start=prompt[0])
        iface.preprocess["decoder_prompt"] = prompt
        iface.seq_meaning = "the number of tokens, for the encoder and the decoder alike"
        if model.task == "text2text-generation":
            gen["kv_cache"] = _kv_cache(config, params, encoder_decoder=True) or False
            iface.generation = gen
    iface.use_cache = "use_cache" in params
    return iface


def _vision(model: ResolvedModel, config: Any, params: set[str]) -> Interface:
    return Interface(inputs={"pixel_values": _pixels(config)}, dims={})


def _speech(model: ResolvedModel, config: Any, params: set[str]) -> Interface:
    processor = _preprocessor_config(model.path)
    rate = int(processor.get("sampling_rate", 16000))
    if "input_features" in params and getattr(config, "max_source_positions", None):
        # Whisper layout: log-mel features of a fixed window, and a text decoder.
        frames = 2 * int(config.max_source_positions)
        gen = _generation(
            model.path, config, model.task == "automatic-speech-recognition", exempt=("forced_decoder_ids",)
        )
        prompt = [_decoder_start(gen, config)]
        reference_kwargs: dict[str, Any] = {}
        lang_to_id = getattr(gen["_config"], "lang_to_id", None)
        if lang_to_id and "<|en|>" in lang_to_id:  # multilingual: pin English transcription, no detection
            prompt += [int(lang_to_id["<|en|>"]), int(gen["_config"].task_to_id["transcribe"])]
            reference_kwargs = {"language": "en", "task": "transcribe"}
        no_timestamps = getattr(gen["_config"], "no_timestamps_token_id", None)
        if no_timestamps is not None:
            prompt.append(int(no_timestamps))
        inputs = {
            "input_features": {
                "kind": "normal",
                "dtype": "float32",
                "shape": ["batch", int(config.num_mel_bins), frames],
            },
            "decoder_input_ids": _tokens(config.vocab_size, start=prompt[0]),
        }
        iface = Interface(
            inputs=inputs,
            dims={"seq": _seq(DEFAULT_SEQ, _max_positions(config, model.path))},
            preprocess={"layout": "features", "sampling_rate": rate, "decoder_prompt": prompt},
            seq_meaning="the number of decoder tokens (the audio window is fixed)",
        )
        if model.task == "automatic-speech-recognition":
            iface.generation = {**gen, "reference_kwargs": reference_kwargs}
        iface.use_cache = "use_cache" in params
        return iface
    if "input_values" in params and getattr(config, "conv_kernel", None):
        # Raw waveform through a convolutional feature encoder (wav2vec2, HuBERT, ...).
        inputs = {"input_values": {"kind": "audio", "dtype": "float32", "shape": ["batch", "samples"]}}
        if processor.get("return_attention_mask") and "attention_mask" in params:
            inputs["attention_mask"] = _mask("samples")
        conv = [[int(k), int(s)] for k, s in zip(config.conv_kernel, config.conv_stride, strict=True)]
        return Interface(
            inputs=inputs,
            dims={"seq": _seq(DEFAULT_FRAMES, None), "samples": conv},
            preprocess={"layout": "waveform", "sampling_rate": rate},
            seq_meaning="the number of output frames (the audio length is derived from it)",
        )
    raise UnsupportedModelError(
        f"{model.architecture}: accel's speech template drives raw-waveform encoders (input_values) and "
        "Whisper-style encoder-decoders (input_features); this model takes neither"
    )


def _vision_text(model: ResolvedModel, config: Any, params: set[str]) -> Interface:
    text, vision = config.text_config, config.vision_config
    inputs = {"input_ids": _tokens(text.vocab_size)}
    if "attention_mask" in params:
        inputs["attention_mask"] = _mask()
    inputs["pixel_values"] = _pixels(vision)
    return Interface(
        inputs=inputs,
        dims={"seq": _seq(DEFAULT_SEQ, _max_positions(text, model.path))},
        seq_meaning="the number of text tokens (the image size is fixed)",
    )


_BUILDERS = {
    "text-encoder": _text,
    "text-generation": _text,
    "text2text": _text,
    "vision": _vision,
    "speech": _speech,
    "vision-text": _vision_text,
}


def build_interface(model: ResolvedModel, config: Any) -> Interface:
    iface = _BUILDERS[model.family](model, config, _forward_parameters(model.architecture))
    if iface.generation is not None:
        iface.generation = {k: v for k, v in iface.generation.items() if not k.startswith("_")}
    return iface
