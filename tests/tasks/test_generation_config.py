"""Greedy generation follows the model's generation config, token for token with transformers' `generate`.

Each variant is a tiny model whose generation_config.json sets what real checkpoints set (BART: forced
BOS/EOS, no-repeat n-grams, a minimum length; Whisper and many LLMs: suppressed tokens). The truth is
transformers' own `generate` on the original model, called here, with the model's config as it is.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from accel.tasks.errors import UnsupportedModelError
from accel.tasks.generate import generate
from accel.tasks.skill_module import import_skill
from accel.tasks.validate import validate
from tests.tiny_models import with_generation_config

NEW_TOKENS = 6
# The greedy loop (templates/parts/greedy.py.j2) is the same for every runtime: OpenVINO's skills generate
# the quickest (the tiny decoders' ONNX Runtime exports take dynamo-attention's ~5 s each).
TARGET = "cpu/openvino"


def prompts(skill_module, causal: bool) -> dict[str, np.ndarray]:
    """Two prompts of 8 tokens, the second with 3 of padding (left for a causal decoder, right otherwise)."""
    feeds = skill_module.make_inputs(2, 8, seed=5)
    where = slice(0, 3) if causal else slice(5, 8)
    feeds["attention_mask"][1, where] = 0
    feeds["input_ids"][1, where] = skill_module.GENERATION["pad_token_id"]
    return feeds


def hf_generate(model_dir: Path, feeds: dict[str, np.ndarray], causal: bool) -> np.ndarray:
    """transformers' greedy generate on the model at `model_dir`, its generation config as saved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(model_dir).eval()
    ids, mask = torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1
        )
    return out[:, ids.shape[1] if causal else 1 :].numpy()


def _plain_tokens(tiny_skill, tiny_models, name: str, causal: bool) -> np.ndarray:
    skill = tiny_skill(name, TARGET)  # the session's skill of the original model
    module = import_skill(skill.path / "skill.py", f"_plain_{skill.skill_id}")
    return hf_generate(tiny_models[name], prompts(module, causal), causal)


@pytest.fixture(scope="module")
def variant_skills(tmp_path_factory) -> Path:
    """Where this module's tests generate the variants' skills: each is generated once, then reused."""
    return tmp_path_factory.mktemp("variant-skills")


@pytest.fixture(scope="module")
def variants(tiny_skill, tiny_models, tmp_path_factory) -> dict[str, tuple[Path, Path, bool]]:
    """name -> (variant model dir, original model dir, causal), each variant's settings chosen to matter."""
    root = tmp_path_factory.mktemp("generation-variants")
    plain = _plain_tokens(tiny_skill, tiny_models, "gpt2", True)
    first, common = int(plain[0, 0]), int(np.bincount(plain.ravel()).argmax())
    settings = {
        "gpt2-forced-eos": ("gpt2", True, {"forced_eos_token_id": 7}),
        "gpt2-no-repeat-and-penalty": ("gpt2", True, {"no_repeat_ngram_size": 2, "repetition_penalty": 1.5}),
        "gpt2-suppressed": (
            "gpt2",
            True,
            {"suppress_tokens": [common], "begin_suppress_tokens": [first, 0], "min_new_tokens": 3},
        ),
        "t5-bart-like": (
            "t5",
            False,
            {"forced_bos_token_id": 5, "forced_eos_token_id": 1, "no_repeat_ngram_size": 2, "min_length": 4},
        ),
    }
    return {
        name: (with_generation_config(tiny_models[base], root / name, **config), tiny_models[base], causal)
        for name, (base, causal, config) in settings.items()
    }


@pytest.mark.parametrize("name", ["gpt2-forced-eos", "gpt2-no-repeat-and-penalty", "gpt2-suppressed", "t5-bart-like"])
def test_greedy_generation_follows_the_generation_config(variants, name, variant_skills):
    variant, original, causal = variants[name]
    skill = generate(str(variant), TARGET, out_dir=variant_skills)  # its own validation compares tokens too
    module = import_skill(skill.path / "skill.py", f"_variant_{skill.skill_id}")
    feeds = prompts(module, causal)
    want = hf_generate(variant, feeds, causal)
    assert not np.array_equal(want, hf_generate(original, feeds, causal)), "the settings change nothing here"
    with module.Skill() as loaded:
        got = loaded.generate(feeds, NEW_TOKENS)
    assert np.array_equal(got, want), (got.tolist(), want.tolist())
    if name == "gpt2-forced-eos":
        assert (got[:, -1] == 7).all()


def test_generation_parity_passes_with_the_settings(variants, variant_skills):
    names = ("gpt2-forced-eos", "t5-bart-like")
    skills = [generate(str(variants[name][0]), TARGET, out_dir=variant_skills).path for name in names]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda path: validate(path, "comprehensive", record=False), skills))
    for report in reports:
        parity = next(c for c in report.checks if c.check == "generation_parity")
        assert report.passed and parity.status == "passed", [c for c in report.checks if c.status != "passed"]
        assert parity.details["settings"]["forced_eos_token_ids"] in ([7], [1])


def test_a_setting_greedy_decoding_does_not_implement_is_refused(tiny_models, tmp_path):
    variant = with_generation_config(tiny_models["gpt2"], tmp_path / "bad-words", bad_words_ids=[[5, 6]])
    with pytest.raises(UnsupportedModelError, match=r"sets bad_words_ids=\[\[5, 6\]\], which accel's greedy"):
        generate(str(variant), TARGET, out_dir=tmp_path / "skills")


def test_whisper_follows_its_suppressed_tokens(tiny_skill, tiny_models, tmp_path):
    """Real Whisper checkpoints suppress tokens (and others at the start): the speech template follows them."""
    plain_skill = tiny_skill("whisper", TARGET)
    module = import_skill(plain_skill.path / "skill.py", f"_plain_{plain_skill.skill_id}")
    features = module.make_inputs(2, None, seed=3)
    with module.Skill() as loaded:
        plain = loaded.generate(features, NEW_TOKENS)
    first, common = int(plain[0, 0]), int(np.bincount(plain.ravel()).argmax())
    variant = with_generation_config(
        tiny_models["whisper"],
        tmp_path / "whisper-suppressed",
        suppress_tokens=[common],
        begin_suppress_tokens=[first],
        no_repeat_ngram_size=2,
    )
    skill = generate(str(variant), TARGET, out_dir=tmp_path / "skills")
    report = validate(skill.path, "comprehensive", record=False)
    assert report.passed, [c for c in report.checks if c.status != "passed"]
    module = import_skill(skill.path / "skill.py", f"_variant_{skill.skill_id}")
    with module.Skill() as loaded:
        got = loaded.generate(features, NEW_TOKENS)
    assert not np.array_equal(got, plain) and common not in got and first not in got[:, 0]
