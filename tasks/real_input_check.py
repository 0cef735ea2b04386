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


def check_real_input(ctx: Context) -> dict[str, Any]:
    rate = ctx.pristine.PREPROCESS.get("sampling_rate", 16000)
    inputs = ctx.skill.preprocess(real_data(ctx.family, rate))
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
        raise Verdict("failed", f"NaN or Inf in {', '.join(bad)} on real data")
    tol = ctx.tolerance
    comparison = compare_outputs(outputs, ctx.reference(inputs), tol)
    shapes = {name: list(value.shape) for name, value in inputs.items()}
    numbers = comparison_numbers(comparison, tol, inputs=shapes)
    if not comparison.passed:
        raise Verdict("failed", f"on real {ctx.family} data: {comparison.message}", **numbers)
    return {
        "message": f"real {ctx.family} data through preprocess (inputs {shapes}): finite, {comparison.message}",
        **numbers,
    }
