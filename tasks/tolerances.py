"""How close two sets of outputs must be, and the one function that decides it.

The generator's own validation and every check that compares outputs (parity, batch and padding
invariance, real input, determinism) call `compare_outputs`; only the tolerance differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

# |skill - reference| <= atol + rtol * |reference|, elementwise.
#
# fp32: calibrated by benchmarks/tolerance_calibration.py over every tiny model of the test zoo and
# MiniLM on cpu/torch, cpu/onnxruntime and cpu/openvino (the README keeps the table it printed).
# The largest |diff| seen anywhere was 3.6e-6 (MiniLM on OpenVINO; tiny models <= 2.9e-6): reordered
# float sums in exported graphs. atol is 10x that, rounded up. rtol 1e-4 leaves room for large outputs
# and is 10x below a 0.1% systematic error, which fails for every family: (1e-3 - rtol) x max
# |reference| is at least 1.8e-4 on every tiny model (ViT's), 4.5x the atol.
FP32_ATOL = 4e-5
FP32_RTOL = 1e-4
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
        return f"{self.atol:g} + {self.rtol:g} x |reference|"


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
    max_rel_diff: float
    worst_output: str | None
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
    """Compare every output by name: same names, same shapes, and within tolerance elementwise.

    A NaN or Inf in `actual` where `expected` is finite (or the other way round) fails, whatever the
    tolerance: it is never replaced by the other side's value. The same non-finite value on both sides
    at the same place counts as equal (two calls of one skill that are NaN alike are `finite`'s case).
    """
    problems: list[str] = []
    if set(actual) != set(expected):
        problems.append(f"outputs {sorted(actual)} differ from {what}'s {sorted(expected)}")
    per_output: dict[str, float] = {}
    worst, worst_abs, worst_rel, worst_excess = None, 0.0, 0.0, -np.inf
    for name in [n for n in expected if n in actual]:
        got = np.asarray(actual[name], dtype=np.float64)
        want = np.asarray(expected[name], dtype=np.float64)
        if got.shape != want.shape:
            problems.append(f"{name} has shape {list(got.shape)}, {what} {list(want.shape)}")
            continue
        mismatched = _nonfinite_mismatch(got, want)
        if mismatched:
            problems.append(f"{name} has {mismatched} NaN or Inf values where {what} has finite ones (or back)")
            per_output[name] = float("inf")
            worst, worst_abs, worst_excess = name, float("inf"), float("inf")
            continue
        finite = np.isfinite(want)
        diff = np.where(finite, np.abs(got - want), 0.0)
        per_output[name] = float(diff.max()) if diff.size else 0.0
        if not diff.size:
            continue
        limit = tolerance.atol + tolerance.rtol * np.where(finite, np.abs(want), 0.0)
        excess = float((diff - limit).max())
        scale = np.where(finite, np.abs(want), 0.0) + max(tolerance.atol, 1e-30)
        worst_rel = max(worst_rel, float((diff / scale).max()))
        if excess > worst_excess:
            worst, worst_abs, worst_excess = name, per_output[name], excess
    if 0 < worst_excess < np.inf:
        problems.append(f"{worst} differs from {what} by up to {worst_abs:.3g} (tolerance {tolerance})")
    max_abs = max(per_output.values(), default=0.0)
    message = "; ".join(problems) if problems else f"max difference {max_abs:.3g} (in {worst}), within {tolerance}"
    return Comparison(
        passed=not problems,
        max_abs_diff=max_abs,
        max_rel_diff=worst_rel,
        worst_output=worst,
        per_output=per_output,
        message=message,
    )
