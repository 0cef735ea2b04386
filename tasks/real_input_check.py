"""real_input: the shipped real text, image or audio through the skill's `preprocess` and a forward pass."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from accel.tasks.check_context import TEXT_FAMILIES, Context, Verdict
from accel.tasks.output_checks import comparison_numbers, nonfinite_outputs
from accel.tasks.tolerances import compare_outputs

DATA_DIR = Path(__file__).resolve().parent / "data"


def _read_wav(path: Path, rate: int) -> np.ndarray:
    with wave.open(str(path)) as fh:
        samples = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").astype(np.float32) / 32768
        source_rate = fh.getframerate()
    if source_rate != rate:
        positions = np.arange(0, len(samples), source_rate / rate)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def real_data(family: str, sampling_rate: int = 16000) -> Any:
    """The shipped real input for a family, in the form that family's `preprocess` takes."""
    from PIL import Image

    sentences = (DATA_DIR / "sentences.txt").read_text().splitlines()
    if family in TEXT_FAMILIES:
        return sentences[:3]
    image = Image.open(DATA_DIR / "image.png").convert("RGB")
    if family == "vision":
        return [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    if family == "vision-text":
        return {"text": sentences[:2], "images": [image, image]}
    wave_ = _read_wav(DATA_DIR / "speech.wav", sampling_rate)
    return [wave_, wave_[: len(wave_) // 2]]


def _one_by_one(raw: Any) -> list[Any]:
    """Each item of a family's real data alone (a dict of parallel lists gives one dict per position)."""
    if isinstance(raw, dict):
        positions = zip(*raw.values(), strict=True)
        return [{key: [value] for key, value in zip(raw, values, strict=True)} for values in positions]
    return [[item] for item in raw]


def check_real_input(ctx: Context) -> dict[str, Any]:
    """The batch through preprocess gives valid, finite outputs; each item alone matches the reference.

    Each item is compared alone because a padded batch of a model that takes no attention mask (HuBERT)
    feeds it silence it cannot tell from sound, where layer norms of near-constant frames amplify
    rounding (7e-4 seen) into what no tolerance for real differences would allow.
    """
    rate = ctx.pristine.PREPROCESS.get("sampling_rate", 16000)
    raw = real_data(ctx.family, rate)
    inputs = ctx.skill.preprocess(raw)
    if set(inputs) != set(ctx.pristine.INPUTS):
        raise Verdict("failed", f"preprocess gave {sorted(inputs)}, the model takes {sorted(ctx.pristine.INPUTS)}")
    outputs = ctx.skill(inputs)
    batch = len(next(iter(inputs.values())))
    if set(outputs) != set(ctx.manifest.outputs) or any(len(v) != batch for v in outputs.values()):
        raise Verdict(
            "failed", f"a forward pass on real data gave { ({k: list(v.shape) for k, v in outputs.items()}) }"
        )
    bad = nonfinite_outputs(outputs)
    if bad:
        raise Verdict("failed", f"NaN or Inf in {', '.join(bad)} on a batch of real data")
    tol = ctx.tolerance
    worst = None
    for number, item in enumerate(_one_by_one(raw)):
        alone = ctx.skill.preprocess(item)
        comparison = compare_outputs(ctx.skill(alone), ctx.reference(alone), tol)
        if worst is None or comparison.max_abs_diff > worst.max_abs_diff or not comparison.passed:
            worst = comparison
        if not comparison.passed:
            numbers = comparison_numbers(comparison, tol, item=number)
            raise Verdict("failed", f"real {ctx.family} item {number}: {comparison.message}", **numbers)
    shapes = {name: list(value.shape) for name, value in inputs.items()}
    return {
        "message": f"real {ctx.family} data through preprocess (a batch {shapes}) is finite; each item alone: "
        f"{worst.message}",
        **comparison_numbers(worst, tol, inputs=shapes),
    }
