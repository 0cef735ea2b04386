"""More tiny random models: at least four architectures per family, chosen for how differently they are driven.

Same pattern as tests/tiny_models.py (whose vocabularies this reuses): real model directories, built
offline in well under a second each, seeded, with a working tokenizer and/or processor beside them.
What each one adds to the zoo is said beside it: a tokenizer without token_type_ids or without a pad
token, positions offset by the padding index, ALiBi from the mask, forced BOS/EOS in the generation
config, an image processor that resizes the shortest edge and crops, a feature extractor that returns
no attention mask, a text tower that returns none, and so on.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch

from tests.tiny_models import (
    TINY_MODELS,
    VOCAB_SIZE,
    WORDS,
    TinyModel,
    _bpe_vocab,
    _save,
    _wordpiece_vocab,
)

_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    """A SentencePiece-style unigram vocabulary (T5, Pegasus, mBART): the specials, words, then letters."""
    pieces = [*specials, *("▁" + w for w in WORDS), *string.ascii_lowercase, "▁", *".,!?"]
    return [(piece, 0.0 if i < len(specials) else -float(i)) for i, piece in enumerate(dict.fromkeys(pieces))]


# text-encoder ---------------------------------------------------------------------------------------


def build_distilbert(path: Path) -> None:
    """A classification head; the tokenizer returns no token_type_ids (DistilBERT has no segments)."""
    from transformers import AutoConfig, DistilBertForSequenceClassification, DistilBertTokenizer

    cfg = AutoConfig.for_model(
        "distilbert",
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
        num_labels=3,
        pad_token_id=0,
    )
    _save(DistilBertForSequenceClassification(cfg), path)
    DistilBertTokenizer(vocab=_wordpiece_vocab(), model_max_length=128).save_pretrained(path)


def build_roberta(path: Path) -> None:
    """Masked LM whose positions start after the padding index (max_position_embeddings = 128 + 2)."""
    from transformers import AutoConfig, RobertaForMaskedLM, RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "roberta",
        **_TEXT,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    _save(RobertaForMaskedLM(cfg), path)
    RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=128).save_pretrained(path)


def build_t5_encoder(path: Path) -> None:
    """An encoder half (AutoModelForTextEncoding): relative positions, no position table, unigram tokens."""
    from transformers import AutoConfig, T5EncoderModel, T5Tokenizer

    cfg = AutoConfig.for_model(
        "t5",
        d_model=32,
        d_kv=16,
        d_ff=37,
        num_layers=2,
        num_heads=2,
        vocab_size=VOCAB_SIZE,
        pad_token_id=0,
        eos_token_id=1,
    )
    _save(T5EncoderModel(cfg), path)
    T5Tokenizer(vocab=_unigram_vocab(["<pad>", "</s>", "<unk>"]), extra_ids=0, model_max_length=128).save_pretrained(
        path
    )


# text-generation ------------------------------------------------------------------------------------


def build_opt(path: Path) -> None:
    """Learned positions computed from the attention mask (offset 2); the tokenizer prepends </s> as BOS."""
    from transformers import AutoConfig, GPT2Tokenizer, OPTForCausalLM

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "opt",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=37,
        word_embed_proj_dim=32,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )
    _save(OPTForCausalLM(cfg), path)
    GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=128,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
    ).save_pretrained(path)


def build_bloom(path: Path) -> None:
    """ALiBi: no position table, the attention bias comes from the mask; no max length in the config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoConfig, BloomForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "bloom",
        hidden_size=32,
        n_layer=2,
        n_head=2,
        vocab_size=VOCAB_SIZE,
        pad_token_id=3,
        bos_token_id=1,
        eos_token_id=2,
    )
    _save(BloomForCausalLM(cfg), path)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=128,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    ).save_pretrained(path)


def build_qwen2(path: Path) -> None:
    """Grouped-query attention, no BOS, two EOS ids in the generation config, no pad id in the config."""
    from transformers import AutoConfig, Qwen2ForCausalLM, Qwen2Tokenizer

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "qwen2",
        **_TEXT,
        num_key_value_heads=1,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
        bos_token_id=None,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = [2, 0]
    model.generation_config.pad_token_id = 0
    _save(model, path)
    Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=128).save_pretrained(path)


def build_gpt_neox(path: Path) -> None:
    """Partial rotary, parallel residual; a tokenizer and a config with no pad token at all (Pythia)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|padding|>"]
    vocab, merges = _bpe_vocab(specials)
    cfg = AutoConfig.for_model(
        "gpt_neox",
        **_TEXT,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=128,
        rotary_pct=0.25,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )
    _save(GPTNeoXForCausalLM(cfg), path)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=128,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    ).save_pretrained(path)


# text2text ------------------------------------------------------------------------------------------


def _seq2seq_dims() -> dict:
    return {
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 37,
        "decoder_ffn_dim": 37,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 128,
    }


def build_bart(path: Path) -> None:
    """Forced BOS and EOS tokens and no-repeat n-grams in its generation config; decoder starts at </s>."""
    from transformers import AutoConfig, BartForConditionalGeneration, BartTokenizer

    vocab, merges = _bpe_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    cfg = AutoConfig.for_model(
        "bart",
        **_seq2seq_dims(),
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
    )
    model = BartForConditionalGeneration(cfg)
    model.generation_config.forced_bos_token_id = 0
    model.generation_config.forced_eos_token_id = 2
    model.generation_config.no_repeat_ngram_size = 3
    _save(model, path)
    BartTokenizer(vocab=vocab, merges=merges, model_max_length=128).save_pretrained(path)


def build_pegasus(path: Path) -> None:
    """Sinusoidal positions, scaled embeddings; pad is the decoder start; a unigram tokenizer."""
    from transformers import AutoConfig, PegasusForConditionalGeneration, PegasusTokenizer

    cfg = AutoConfig.for_model(
        "pegasus",
        **_seq2seq_dims(),
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        forced_eos_token_id=1,
    )
    _save(PegasusForConditionalGeneration(cfg), path)
    vocab = _unigram_vocab(["<pad>", "</s>", "<mask_1>", "<mask_2>", "<unk>"])
    PegasusTokenizer(vocab=vocab, offset=0, model_max_length=128).save_pretrained(path)


def build_mbart(path: Path) -> None:
    """Language codes: the tokenizer appends the source language, generation forces the target language."""
    from transformers import AutoConfig, MBartForConditionalGeneration, MBartTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = _unigram_vocab(specials)
    languages = ["en_XX", "fr_XX"]
    vocab += [(code, 0.0) for code in languages] + [("<mask>", 0.0)]
    cfg = AutoConfig.for_model(
        "mbart",
        **_seq2seq_dims(),
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        scale_embedding=True,
    )
    model = MBartForConditionalGeneration(cfg)
    model.generation_config.forced_bos_token_id = len(vocab) - 2  # fr_XX
    _save(model, path)
    MBartTokenizer(vocab=vocab, src_lang="en_XX", tgt_lang="fr_XX", model_max_length=128).save_pretrained(path)


# vision ---------------------------------------------------------------------------------------------


def build_convnext(path: Path) -> None:
    """Convolutional; the processor resizes the shortest edge to size / crop_pct and centre-crops."""
    from transformers import AutoConfig, ConvNextForImageClassification, ConvNextImageProcessor

    cfg = AutoConfig.for_model(
        "convnext",
        num_channels=3,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_stages=2,
        image_size=32,
        num_labels=3,
    )
    _save(ConvNextForImageClassification(cfg), path)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(path)


def build_resnet(path: Path) -> None:
    """Batch-norm convolutions; its config states no image size, only its processor does (shortest edge)."""
    from transformers import AutoConfig, ConvNextImageProcessor, ResNetForImageClassification

    cfg = AutoConfig.for_model(
        "resnet",
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=3,
    )
    _save(ResNetForImageClassification(cfg), path)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(path)


def build_swin(path: Path) -> None:
    """Shifted windows over patches: the input size must be a multiple of patch x window."""
    from transformers import AutoConfig, SwinForImageClassification, ViTImageProcessor

    cfg = AutoConfig.for_model(
        "swin",
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=4,
        num_labels=3,
    )
    _save(SwinForImageClassification(cfg), path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def build_deit(path: Path) -> None:
    """Distilled ViT with two heads (three outputs); the processor resizes to 40 and crops to 32."""
    from transformers import AutoConfig, DeiTForImageClassificationWithTeacher, DeiTImageProcessor

    cfg = AutoConfig.for_model(
        "deit",
        **_TEXT,
        image_size=32,
        patch_size=8,
        num_labels=3,
        architectures=["DeiTForImageClassificationWithTeacher"],
    )
    _save(DeiTForImageClassificationWithTeacher(cfg), path)
    DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


# speech ---------------------------------------------------------------------------------------------

_CONV = {
    "conv_dim": (16, 16),
    "conv_stride": (5, 4),
    "conv_kernel": (10, 8),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def build_hubert(path: Path) -> None:
    """A bare encoder with group-norm features: its feature extractor returns no attention mask."""
    from transformers import AutoConfig, HubertModel, Wav2Vec2FeatureExtractor

    cfg = AutoConfig.for_model("hubert", **_TEXT, **_CONV, feat_extract_norm="group", do_stable_layer_norm=False)
    _save(HubertModel(cfg), path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(path)


def build_wav2vec2_classifier(path: Path) -> None:
    """An audio-classification head that pools over the frames its attention mask leaves."""
    from transformers import AutoConfig, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    cfg = AutoConfig.for_model(
        "wav2vec2",
        **_TEXT,
        **_CONV,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        num_labels=4,
        classifier_proj_size=16,
    )
    _save(Wav2Vec2ForSequenceClassification(cfg), path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(path)


def build_wavlm(path: Path) -> None:
    """Gated relative position bias; frame classification is not driven, the bare encoder is."""
    from transformers import AutoConfig, Wav2Vec2FeatureExtractor, WavLMModel

    cfg = AutoConfig.for_model(
        "wavlm", **_TEXT, **_CONV, num_buckets=32, max_bucket_distance=64, feat_extract_norm="layer"
    )
    _save(WavLMModel(cfg), path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(path)


def build_speech_to_text(path: Path) -> None:
    """Variable-length log-mel filter banks (no fixed window) into a convolutional encoder-decoder."""
    from transformers import AutoConfig, Speech2TextFeatureExtractor, Speech2TextForConditionalGeneration

    cfg = AutoConfig.for_model(
        "speech_to_text",
        **_seq2seq_dims(),
        max_source_positions=256,
        max_target_positions=64,
        input_feat_per_channel=16,
        conv_channels=16,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    _save(Speech2TextForConditionalGeneration(cfg), path)
    Speech2TextFeatureExtractor(feature_size=16, num_mel_bins=16).save_pretrained(path)


def build_ast(path: Path) -> None:
    """Audio Spectrogram Transformer: input_values are a spectrogram, not a waveform."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification, AutoConfig

    cfg = AutoConfig.for_model(
        "audio-spectrogram-transformer", **_TEXT, max_length=64, num_mel_bins=16, patch_size=8, num_labels=3
    )
    _save(ASTForAudioClassification(cfg), path)
    ASTFeatureExtractor(num_mel_bins=16, max_length=64).save_pretrained(path)


# vision-text ----------------------------------------------------------------------------------------

_VISION = {**_TEXT, "image_size": 32, "patch_size": 8}


def build_siglip(path: Path) -> None:
    """Sigmoid CLIP: its text tower takes no attention mask from its tokenizer and pools the last token."""
    from transformers import AutoConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, T5Tokenizer

    text = {**_TEXT, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 64, "pad_token_id": 0, "eos_token_id": 1}
    cfg = AutoConfig.for_model("siglip", text_config=text, vision_config=_VISION)
    _save(SiglipModel(cfg), path)
    # SiglipTokenizer needs sentencepiece; this unigram tokenizer behaves the same way: ids only, no mask.
    tokenizer = T5Tokenizer(
        vocab=_unigram_vocab(["<pad>", "</s>", "<unk>"]),
        extra_ids=0,
        model_max_length=64,
        model_input_names=["input_ids"],
    )
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    processor.save_pretrained(path)


def build_chinese_clip(path: Path) -> None:
    """A BERT text tower (token_type_ids, WordPiece) and a shortest-edge-then-crop image processor."""
    from transformers import (
        AutoConfig,
        BertTokenizer,
        ChineseCLIPImageProcessor,
        ChineseCLIPModel,
        ChineseCLIPProcessor,
    )

    text = {**_TEXT, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 64}
    cfg = AutoConfig.for_model("chinese_clip", text_config=text, vision_config=_VISION, projection_dim=16)
    _save(ChineseCLIPModel(cfg), path)
    processor = ChineseCLIPProcessor(
        image_processor=ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=BertTokenizer(vocab=_wordpiece_vocab(), model_max_length=64),
    )
    processor.save_pretrained(path)


def build_align(path: Path) -> None:
    """An EfficientNet image tower (batch norm, no patches) beside a BERT text tower."""
    from transformers import AlignModel, AlignProcessor, AutoConfig, BertTokenizer, EfficientNetImageProcessor

    text = {**_TEXT, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 64}
    vision = {
        "image_size": 32,
        "width_coefficient": 0.1,
        "depth_coefficient": 0.1,
        "hidden_dim": 32,
        "num_hidden_layers": 4,
    }
    cfg = AutoConfig.for_model("align", text_config=text, vision_config=vision, projection_dim=32)
    model = AlignModel(cfg)
    # Its default init (normal, std 0.02) shrinks activations ~1e-15 by the pooled output of so narrow a
    # tower, and the normalised embeddings become NaN: He init keeps them at a usable scale.
    with torch.no_grad():
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    _save(model, path)
    processor = AlignProcessor(
        image_processor=EfficientNetImageProcessor(
            size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=BertTokenizer(vocab=_wordpiece_vocab(), model_max_length=64),
    )
    processor.save_pretrained(path)


def build_altclip(path: Path) -> None:
    """An XLM-R text tower: positions offset by the padding index, a unigram tokenizer, a projection dim."""
    from transformers import AltCLIPModel, AltCLIPProcessor, AutoConfig, CLIPImageProcessor, XLMRobertaTokenizer

    text = {
        **_TEXT,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 66,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "project_dim": 16,
    }
    cfg = AutoConfig.for_model("altclip", text_config=text, vision_config=_VISION, projection_dim=16)
    _save(AltCLIPModel(cfg), path)
    vocab = [*_unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"]), ("<mask>", 0.0)]
    processor = AltCLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=XLMRobertaTokenizer(vocab=vocab, model_max_length=64),
    )
    processor.save_pretrained(path)


def build_blip(path: Path) -> None:
    """BLIP's contrastive model: a BERT tokenizer beside an image processor that resizes without cropping."""
    from transformers import AutoConfig, BertTokenizer, BlipImageProcessor, BlipModel, BlipProcessor

    text = {**_TEXT, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 64, "encoder_hidden_size": 32}
    cfg = AutoConfig.for_model("blip", text_config=text, vision_config=_VISION, projection_dim=16)
    _save(BlipModel(cfg), path)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=BertTokenizer(vocab=_wordpiece_vocab(), model_max_length=64),
    )
    processor.save_pretrained(path)


def build_siglip2(path: Path) -> None:
    """NaFlex: images become a variable number of patches with a patch mask and their spatial shapes."""
    from transformers import AutoConfig, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor, T5Tokenizer

    text = {**_TEXT, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 64, "pad_token_id": 0, "eos_token_id": 1}
    vision = {**_TEXT, "patch_size": 8, "num_patches": 16}
    cfg = AutoConfig.for_model("siglip2", text_config=text, vision_config=vision)
    _save(Siglip2Model(cfg), path)
    tokenizer = T5Tokenizer(vocab=_unigram_vocab(["<pad>", "</s>", "<unk>"]), extra_ids=0, model_max_length=64)
    processor = Siglip2Processor(
        image_processor=Siglip2ImageProcessor(patch_size=8, max_num_patches=16), tokenizer=tokenizer
    )
    processor.save_pretrained(path)


def build_wav2vec2_bert(path: Path) -> None:
    """A conformer over log-mel features of any length (input_features), not a waveform."""
    from transformers import AutoConfig, SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    cfg = AutoConfig.for_model("wav2vec2-bert", **_TEXT, feature_projection_input_dim=160, conv_depthwise_kernel_size=3)
    _save(Wav2Vec2BertModel(cfg), path)
    SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2).save_pretrained(path)


ZOO_MODELS: dict[str, TinyModel] = {
    m.name: m
    for m in [
        TinyModel(
            "distilbert", "text-encoder", "text-classification", "DistilBertForSequenceClassification", build_distilbert
        ),
        TinyModel("roberta", "text-encoder", "fill-mask", "RobertaForMaskedLM", build_roberta),
        TinyModel("t5-encoder", "text-encoder", "feature-extraction", "T5EncoderModel", build_t5_encoder),
        TinyModel("opt", "text-generation", "text-generation", "OPTForCausalLM", build_opt),
        TinyModel("bloom", "text-generation", "text-generation", "BloomForCausalLM", build_bloom),
        TinyModel("qwen2", "text-generation", "text-generation", "Qwen2ForCausalLM", build_qwen2),
        TinyModel("gpt-neox", "text-generation", "text-generation", "GPTNeoXForCausalLM", build_gpt_neox),
        TinyModel("bart", "text2text", "text2text-generation", "BartForConditionalGeneration", build_bart),
        TinyModel("pegasus", "text2text", "text2text-generation", "PegasusForConditionalGeneration", build_pegasus),
        TinyModel("mbart", "text2text", "text2text-generation", "MBartForConditionalGeneration", build_mbart),
        TinyModel("convnext", "vision", "image-classification", "ConvNextForImageClassification", build_convnext),
        TinyModel("resnet", "vision", "image-classification", "ResNetForImageClassification", build_resnet),
        TinyModel("swin", "vision", "image-classification", "SwinForImageClassification", build_swin),
        TinyModel("deit", "vision", "image-classification", "DeiTForImageClassificationWithTeacher", build_deit),
        TinyModel("hubert", "speech", "feature-extraction", "HubertModel", build_hubert),
        TinyModel(
            "wav2vec2-classifier",
            "speech",
            "audio-classification",
            "Wav2Vec2ForSequenceClassification",
            build_wav2vec2_classifier,
        ),
        TinyModel("wavlm", "speech", "feature-extraction", "WavLMModel", build_wavlm),
        TinyModel(
            "speech-to-text",
            "speech",
            "automatic-speech-recognition",
            "Speech2TextForConditionalGeneration",
            build_speech_to_text,
        ),
        TinyModel("wav2vec2-bert", "speech", "feature-extraction", "Wav2Vec2BertModel", build_wav2vec2_bert),
        TinyModel("ast", "speech", "audio-classification", "ASTForAudioClassification", build_ast),
        TinyModel("siglip", "vision-text", "zero-shot-image-classification", "SiglipModel", build_siglip),
        TinyModel(
            "chinese-clip", "vision-text", "zero-shot-image-classification", "ChineseCLIPModel", build_chinese_clip
        ),
        TinyModel("align", "vision-text", "zero-shot-image-classification", "AlignModel", build_align),
        TinyModel("altclip", "vision-text", "zero-shot-image-classification", "AltCLIPModel", build_altclip),
        TinyModel("blip", "vision-text", "zero-shot-image-classification", "BlipModel", build_blip),
        TinyModel("siglip2", "vision-text", "zero-shot-image-classification", "Siglip2Model", build_siglip2),
    ]
}
assert not set(ZOO_MODELS) & set(TINY_MODELS), "zoo names must not shadow tests/tiny_models.py's"


def build_zoo_model(root: Path, name: str) -> Path:
    """Build one zoo model under `root` (once: an existing directory is reused); its directory."""
    path = root / name
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        np.random.seed(0)
        path.mkdir(parents=True, exist_ok=True)
        ZOO_MODELS[name].build(path)
    return path


__all__ = ["ZOO_MODELS", "build_zoo_model"]
