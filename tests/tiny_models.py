"""Tiny random transformers models, one per architecture we test, built offline in a few seconds.

Each is a real model directory (config.json, model.safetensors, generation config where generative)
with a working tokenizer and/or processor saved beside it. Vocabularies are written out, not trained,
so the same code gives the same files on every run (trainers like WordPiece are not deterministic).
Weights are seeded; parity and benchmark tests need real, if meaningless, numbers.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB_SIZE = 1000
WORDS = (  # noqa: SIM905 (a sentence reads better than a list of 50 quoted words)
    "the a an of to and in is it on for with as at by this that from be are was model text image audio "
    "speech token run test fast slow small large hello world cat dog man eating food bread piece music "
    "house car red blue green one two three four five"
).split()


@dataclass(frozen=True)
class TinyModel:
    name: str
    family: str
    task: str
    architecture: str
    build: Callable[[Path], None]


def _byte_alphabet() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _bpe_vocab(specials: list[str], space: str = "Ġ") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary: the specials, single symbols, and merges for a few words.

    `space` is how the tokenizer marks a word start: "Ġ" for byte-level BPE (GPT-2, CLIP, Whisper, whose
    symbols are the 256 byte characters), "▁" for SentencePiece-style BPE (Llama, symbols are characters).
    """
    vocab = {token: i for i, token in enumerate(specials)}
    symbols = _byte_alphabet() if space == "Ġ" else [space, *string.ascii_letters, *string.digits, *string.punctuation]
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        piece = space + word
        current = piece[0]
        for char in piece[1:]:
            merged = current + char
            if merged not in vocab:
                merges.append((current, char))
                vocab[merged] = len(vocab)
            current = merged
    return vocab, merges


def _wordpiece_vocab() -> dict[str, int]:
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *string.ascii_lowercase,
        *string.digits,
        *".,!?'-",
        *WORDS,
        *(f"##{c}" for c in string.ascii_lowercase + string.digits),
    ]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _save(model: torch.nn.Module, path: Path) -> None:
    model.eval()
    model.save_pretrained(path)


def build_bert(path: Path) -> None:
    from transformers import AutoConfig, BertModel, BertTokenizer

    cfg = AutoConfig.for_model(
        "bert",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
    )
    _save(BertModel(cfg), path)
    BertTokenizer(vocab=_wordpiece_vocab(), model_max_length=128).save_pretrained(path)


def build_gpt2(path: Path) -> None:
    from transformers import AutoConfig, GPT2LMHeadModel, GPT2Tokenizer

    cfg = AutoConfig.for_model(
        "gpt2",
        n_embd=32,
        n_layer=2,
        n_head=2,
        vocab_size=VOCAB_SIZE,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    _save(GPT2LMHeadModel(cfg), path)
    vocab, merges = _bpe_vocab(["<|endoftext|>"])
    GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=128, pad_token="<|endoftext|>").save_pretrained(path)


def build_llama(path: Path) -> None:
    from transformers import AutoConfig, LlamaForCausalLM, LlamaTokenizer

    cfg = AutoConfig.for_model(
        "llama",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    _save(LlamaForCausalLM(cfg), path)
    vocab, merges = _bpe_vocab(["<unk>", "<s>", "</s>"], space="▁")
    LlamaTokenizer(vocab=vocab, merges=merges, model_max_length=128, pad_token="<unk>").save_pretrained(path)


def build_t5(path: Path) -> None:
    from transformers import AutoConfig, T5ForConditionalGeneration, T5Tokenizer

    cfg = AutoConfig.for_model(
        "t5",
        d_model=32,
        d_kv=16,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        vocab_size=VOCAB_SIZE,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    _save(T5ForConditionalGeneration(cfg), path)
    pieces = ["<pad>", "</s>", "<unk>", *("▁" + w for w in WORDS), *string.ascii_lowercase, "▁", *".,!?"]
    vocab = [(piece, -float(i)) for i, piece in enumerate(dict.fromkeys(pieces))]
    T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=128).save_pretrained(path)


def build_vit(path: Path) -> None:
    from transformers import AutoConfig, ViTForImageClassification, ViTImageProcessor

    cfg = AutoConfig.for_model(
        "vit",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    _save(ViTForImageClassification(cfg), path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def build_wav2vec2(path: Path) -> None:
    import json

    from transformers import (
        AutoConfig,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    chars = ["<pad>", "<s>", "</s>", "<unk>", "|", *string.ascii_uppercase, "'"]
    cfg = AutoConfig.for_model(
        "wav2vec2",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=len(chars),
        pad_token_id=0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    _save(Wav2Vec2ForCTC(cfg), path)
    vocab_file = path / "vocab.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file))
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)


def build_whisper(path: Path) -> None:
    from transformers import (
        AutoConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "whisper",
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=64,
        vocab_size=VOCAB_SIZE,
        # A shrunk vocabulary needs its special ids inside it (the defaults point past 50000).
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config.forced_decoder_ids = None
    model.generation_config.no_timestamps_token_id = vocab["<|notimestamps|>"]
    _save(model, path)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=64)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        path
    )


def build_clip(path: Path) -> None:
    from transformers import AutoConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = _bpe_vocab(["<|startoftext|>", "<|endoftext|>"])
    text = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 64,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "image_size": 32,
        "patch_size": 8,
    }
    cfg = AutoConfig.for_model("clip", text_config=text, vision_config=vision, projection_dim=16)
    _save(CLIPModel(cfg), path)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=64),
    )
    processor.save_pretrained(path)


TINY_MODELS: dict[str, TinyModel] = {
    m.name: m
    for m in [
        TinyModel("bert", "text-encoder", "feature-extraction", "BertModel", build_bert),
        TinyModel("gpt2", "text-generation", "text-generation", "GPT2LMHeadModel", build_gpt2),
        TinyModel("llama", "text-generation", "text-generation", "LlamaForCausalLM", build_llama),
        TinyModel("t5", "text2text", "text2text-generation", "T5ForConditionalGeneration", build_t5),
        TinyModel("vit", "vision", "image-classification", "ViTForImageClassification", build_vit),
        TinyModel("wav2vec2", "speech", "automatic-speech-recognition", "Wav2Vec2ForCTC", build_wav2vec2),
        TinyModel(
            "whisper",
            "speech",
            "automatic-speech-recognition",
            "WhisperForConditionalGeneration",
            build_whisper,
        ),
        TinyModel("clip", "vision-text", "zero-shot-image-classification", "CLIPModel", build_clip),
    ]
}


def build_tiny_models(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Build the named tiny models (all by default) under `root`; returns name -> model directory."""
    built = {}
    for name in names or list(TINY_MODELS):
        path = root / name
        if not (path / "config.json").exists():
            torch.manual_seed(0)
            np.random.seed(0)
            path.mkdir(parents=True, exist_ok=True)
            TINY_MODELS[name].build(path)
        built[name] = path
    return built


def with_generation_config(source: Path, dest: Path, **settings: object) -> Path:
    """A copy of the tiny model at `source` whose generation_config.json also sets `settings`.

    Real checkpoints set these (BART: forced BOS/EOS and no-repeat n-grams; Whisper: suppressed tokens);
    the copy lets a test drive them on a tiny model, built offline like the others.
    """
    import json
    import shutil

    if not (dest / "config.json").exists():
        shutil.copytree(source, dest)
        path = dest / "generation_config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**config, **settings}, indent=2))
    return dest
