"""Checks of generation: the skill's greedy `generate` against transformers' own `generate` with the
same settings (generation_parity), and its KV cache, used and right (kv_cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from accel.tasks.check_context import Context, Verdict
from accel.tasks.tolerances import FP32_ATOL, FP32_RTOL, Tolerance, compare_outputs

GENERATION_TOKENS = 8
PADDED_ROW_SHORTER_BY = 3  # tokens of padding in the second prompt of the batch
_FLOAT_NOISE = Tolerance(atol=FP32_ATOL, rtol=FP32_RTOL)


def pad_second_row(prompts: dict[str, np.ndarray], pad_token: int, left: bool) -> dict[str, np.ndarray]:
    """`prompts` (in place) with the second row shorter: padding on the left (causal decoders) or the right."""
    if "attention_mask" not in prompts or len(prompts["input_ids"]) < 2 or prompts["input_ids"].shape[1] < 2:
        return prompts
    seq = prompts["input_ids"].shape[1]
    short = min(PADDED_ROW_SHORTER_BY, seq - 1)
    where = slice(0, short) if left else slice(seq - short, seq)
    prompts["attention_mask"][1, where] = 0
    prompts["input_ids"][1, where] = pad_token
    return prompts


def padded_prompts(ctx: Context, seq: int | None, seed: int) -> dict[str, np.ndarray]:
    """Two prompts, the second shorter and padded (on the left for causal decoders), as preprocess makes them."""
    return pad_second_row(ctx.inputs(2, seq, seed), ctx.pad_token, ctx.pads_left)


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


def _with_token(prompts: dict[str, np.ndarray], token: np.ndarray) -> dict[str, np.ndarray]:
    """The prompts with one more token per row: the decoder's for an encoder-decoder, else the prompt's own."""
    longer = dict(prompts)
    column = token.astype(np.int64)[:, None]
    if "decoder_input_ids" in prompts:
        longer["decoder_input_ids"] = np.concatenate([prompts["decoder_input_ids"], column], axis=1)
        return longer
    longer["input_ids"] = np.concatenate([prompts["input_ids"], column], axis=1)
    longer["attention_mask"] = np.concatenate([prompts["attention_mask"], np.ones_like(column)], axis=1)
    return longer


def cache_consistency(
    skill: Any,
    reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    prompts: dict[str, np.ndarray],
    tolerance: Tolerance,
) -> dict[str, Any]:
    """A decode step with the skill's cache gives the logits of the whole sequence, and one with that cache
    zeroed does not: the figures, or Verdict("failed") saying which part does not hold.

    `reference(inputs)` is the forward without a cache on the whole sequence. A skill that ignores the
    cache it is given (one that runs every step on its own copy of the tokens, or on no past at all)
    fails one of the two.
    """
    logits, state = skill.prefill(prompts)
    cache = state.get("cache") if isinstance(state, dict) else None
    if not cache:
        raise Verdict("failed", "prefill returned no cache in its state: decoding cannot continue from one")
    token = np.asarray(logits).argmax(axis=-1)
    zeroed = {**state, "cache": {name: np.zeros_like(value) for name, value in cache.items()}}
    # Lengths read before the next step: a stateful skill's cache (OpenVINO's) moves on in place at each one.
    lengths = {name: int(value.shape[2]) for name, value in cache.items()}
    got, after = skill.decode(token, state)
    grown = sorted({int(after["cache"][name].shape[2]) - length for name, length in lengths.items()})
    want = reference(_with_token(prompts, token))["logits"][:, -1, :]
    comparison = compare_outputs({"logits": np.asarray(got)}, {"logits": want}, tolerance)
    if not comparison.passed:
        raise Verdict(
            "failed",
            f"a decode step with the cache differs from the forward on the whole sequence: {comparison.message}",
            max_abs_diff=comparison.max_abs_diff,
        )
    blind, _ = skill.decode(token, zeroed)
    # The skill against itself: with its cache zeroed a skill that reads it gives other logits by far more
    # than float noise, whatever its precision; one that ignores it gives the same ones.
    if compare_outputs({"logits": np.asarray(blind)}, {"logits": np.asarray(got)}, _FLOAT_NOISE).passed:
        raise Verdict("failed", "a decode step gives the same logits with its cache zeroed: the cache is not used")
    return {
        "message": f"a decode step with the cache matches the forward on the whole sequence ({comparison.message}); "
        "with the cache zeroed it does not",
        "max_abs_diff": comparison.max_abs_diff,
        "details": {"cache_inputs": len(cache), "positions_added_per_step": grown},
    }


def check_kv_cache(ctx: Context) -> dict[str, Any]:
    cache = (ctx.manifest.generation or {}).get("kv_cache")
    if not cache:
        raise Verdict("skipped", f"{ctx.manifest.model.architecture} on this target decodes without a KV cache")
    if not (hasattr(ctx.skill, "prefill") and hasattr(ctx.skill, "decode")):
        raise Verdict("failed", "the manifest declares a KV cache but the skill has no prefill / decode")
    prompts = padded_prompts(ctx, ctx.lengths()[0], 71)
    return cache_consistency(ctx.skill, ctx.reference, prompts, ctx.tolerance)


def _settings(generation: dict[str, Any]) -> dict[str, Any]:
    skip = {"note", "strategy", "kv_cache", "reference_kwargs"}
    return {k: v for k, v in generation.items() if k not in skip}
