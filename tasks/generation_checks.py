"""generation_parity: the skill's greedy `generate` against transformers' own `generate`, same settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.tasks.check_context import Context, Verdict

GENERATION_TOKENS = 8
PADDED_ROW_SHORTER_BY = 3  # tokens of padding in the second prompt of the batch


def padded_prompts(ctx: Context, seq: int | None, seed: int) -> dict[str, np.ndarray]:
    """Two prompts, the second shorter and padded (on the left for causal decoders), as preprocess makes them."""
    prompts = ctx.inputs(2, seq, seed)
    if "attention_mask" not in prompts or seq is None or seq < 2:
        return prompts
    short = min(PADDED_ROW_SHORTER_BY, seq - 1)
    where = slice(0, short) if ctx.pads_left else slice(seq - short, seq)
    prompts["attention_mask"][1, where] = 0
    prompts["input_ids"][1, where] = ctx.pad_token
    return prompts


def check_generation_parity(ctx: Context) -> dict[str, Any]:
    if ctx.manifest.generation is None or not hasattr(ctx.skill, "generate"):
        raise Verdict("skipped", f"{ctx.manifest.model.task} does not generate")
    seq = ctx.lengths()[0]
    steps = GENERATION_TOKENS
    limit = ctx.pristine.DIMS["seq"]["max"]
    if limit is not None and ctx.family == "text-generation":
        steps = max(1, min(steps, limit - (seq or 0)))
    prompts = padded_prompts(ctx, seq, 61)
    got = np.asarray(ctx.skill.generate(prompts, steps))
    trusted = ctx.pristine.Skill()  # never loaded: only its reference side runs
    trusted._reference = ctx.reference_module()
    want = np.asarray(trusted.reference_generate(prompts, steps))
    padded = "attention_mask" in prompts and not prompts["attention_mask"].all()
    batch = f"a batch of 2 prompts ({'the second padded on the ' + ('left' if ctx.pads_left else 'right')})"
    what = batch if padded else "a batch of 2 prompts"
    if got.shape != want.shape or not (got == want).all():
        raise Verdict("failed", f"greedy tokens for {what}: {got.tolist()}, transformers' generate: {want.tolist()}")
    return {
        "message": f"{want.shape[1]} greedy tokens for {what} equal transformers' generate",
        "details": {"tokens": want.tolist(), "settings": _settings(ctx.manifest.generation)},
    }


def _settings(generation: dict[str, Any]) -> dict[str, Any]:
    skip = {"note", "strategy", "kv_cache", "reference_kwargs"}
    return {k: v for k, v in generation.items() if k not in skip}
