"""How close two sets of outputs must be, and the one function that decides it.

The generator's own validation and every check that compares outputs (parity, batch and padding
invariance, real input, determinism) call `compare_outputs`; only the tolerance differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

# Per output: max |skill - reference| <= atol + rtol x max |reference|. The scale is the output's own
# largest value, because float rounding grows with the values a graph carries, and so that a
# systematic error of a given share (outputs x1.001) fails alike on outputs of any magnitude.
#
# fp32: calibrated by benchmarks/tolerance_calibration.py over every tiny model of the test zoo
# (tests/tiny_models.py and tests/tiny_zoo.py: the 28 architectures accel drives) and MiniLM on cpu/torch,
# cpu/onnxruntime and cpu/openvino; the README keeps the table it printed. Largest |diff| relative
# to its output's max |value|: 1.4e-5 (ALIGN's parity; every other model <= 4.2e-6, MiniLM 1.1e-6),
# from reordered float sums in exported graphs. rtol is 10x that, rounded up; atol is a floor for
# outputs near zero (largest |diff| seen anywhere 3.6e-6, on outputs of max |value| 5.6). Outputs
# x1.001 then fail for every output whose max |value| exceeds 1e-6 / (1e-3 - rtol) = 1.2e-3: every
# tiny model's does (the smallest is 4.9e-3, a wav2vec2 classifier's logits).
FP32_ATOL = 1e-6
FP32_RTOL = 1.5e-4
# Half precisions keep 8 (bf16) or 11 (fp16) mantissa bits: errors of 1e-2 accumulate over a few
# layers; int8 quantizes the weights.
_LOW_PRECISION = {
    "fp16": (2e-2, 2e-2),
    "bf16": (8e-2, 8e-2),
    "int8": (1.5e-1, 1.5e-1),
}
# Long convolution stacks and 3000-frame encoders add up more rounding at low precision.
_LOW_PRECISION_FAMILY_FACTOR = {"speech": 4.0}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"{self.atol:g} + {self.rtol:g} x max |reference|"


def tolerance_for(family: str, runtime: str, precision: str) -> Tolerance:
    """The tolerance a skill of `family` at `precision` is held to (the same on every runtime)."""
    del runtime  # calibrated over all CPU runtimes together
    if precision == "fp32":
        return Tolerance(atol=FP32_ATOL, rtol=FP32_RTOL)
    atol, rtol = _LOW_PRECISION[precision]
    factor = _LOW_PRECISION_FAMILY_FACTOR.get(family, 1.0)
    return Tolerance(atol=atol * factor, rtol=rtol * factor)


class Comparison(BaseModel):
    passed: bool
    max_abs_diff: float
    max_rel_diff: float  # max over outputs of max |diff| / max |expected|
    worst_output: str | None  # the output nearest its limit (or furthest past it)
    limit: float | None  # the absolute limit of that output: atol + rtol x its max |expected|
    per_output: dict[str, float]
    message: str


def _nonfinite_mismatch(got: np.ndarray, want: np.ndarray) -> int:
    """How many positions are NaN or Inf on one side and not the same non-finite value on the other."""
    either = ~np.isfinite(got) | ~np.isfinite(want)
    same = (np.isnan(got) & np.isnan(want)) | (got == want)
    return int((either & ~same).sum())


def compare_outputs(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], tolerance: Tolerance, what: str = "the reference"
) -> Comparison:
    """Compare every output by name: same names, same shapes, and max |diff| within each output's limit.

    A NaN or Inf in `actual` where `expected` is finite (or the other way round) fails, whatever the
    tolerance: it is never replaced by the other side's value. The same non-finite value on both sides
    at the same place counts as equal (two calls of one skill that are NaN alike are `finite`'s case).
    """
    problems: list[str] = []
    if set(actual) != set(expected):
        problems.append(f"outputs {sorted(actual)} differ from {what}'s {sorted(expected)}")
    per_output: dict[str, float] = {}
    worst, worst_limit, worst_rel, worst_ratio = None, None, 0.0, -np.inf
    for name in [n for n in expected if n in actual]:
        got = np.asarray(actual[name], dtype=np.float64)
        want = np.asarray(expected[name], dtype=np.float64)
        if got.shape != want.shape:
            problems.append(f"{name} has shape {list(got.shape)}, {what} {list(want.shape)}")
            continue
        mismatched = _nonfinite_mismatch(got, want)
        finite = np.isfinite(want)
        scale = float(np.abs(want[finite]).max()) if finite.any() else 0.0
        limit = tolerance.atol + tolerance.rtol * scale
        if mismatched:
            problems.append(f"{name} has {mismatched} NaN or Inf values where {what} has finite ones (or back)")
            per_output[name] = float("inf")
            worst, worst_limit, worst_ratio, worst_rel = name, limit, float("inf"), float("inf")
            continue
        diff = float(np.abs(got[finite] - want[finite]).max()) if finite.any() else 0.0
        per_output[name] = diff
        worst_rel = max(worst_rel, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
        ratio = diff / limit if limit > 0 else (0.0 if diff == 0 else float("inf"))
        if ratio > worst_ratio:
            worst, worst_limit, worst_ratio = name, limit, ratio
        if diff > limit:
            problems.append(
                f"{name} differs from {what} by up to {diff:.3g}, allowed {limit:.3g} "
                f"({tolerance.atol:g} + {tolerance.rtol:g} x its max |value| {scale:.3g})"
            )
    max_abs = max(per_output.values(), default=0.0)
    message = (
        "; ".join(problems)
        if problems
        else f"max difference {max_abs:.3g}, within {tolerance} (closest to its limit: {worst}, allowed "
        f"{(worst_limit or 0.0):.3g})"
    )
    return Comparison(
        passed=not problems,
        max_abs_diff=max_abs,
        max_rel_diff=worst_rel,
        worst_output=worst,
        limit=worst_limit,
        per_output=per_output,
        message=message,
    )
