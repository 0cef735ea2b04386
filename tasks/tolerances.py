"""How close a skill's outputs must be to the reference model's, per family, runtime and precision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

# |skill - reference| <= atol + rtol * |reference|, elementwise. fp32 graphs differ from eager torch
# by reordered float sums (1e-7..1e-5 seen on the tiny models and MiniLM); half precisions keep
# 8 (bf16) or 11 (fp16) mantissa bits, so errors of 1e-2 accumulate over a few layers.
_BY_PRECISION = {
    "fp32": (1e-4, 1e-3),
    "fp16": (2e-2, 2e-2),
    "bf16": (8e-2, 8e-2),
    "int8": (1.5e-1, 1.5e-1),
}
# Long convolution stacks and 3000-frame encoders add up more rounding.
_FAMILY_FACTOR = {"speech": 4.0}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


def tolerance_for(family: str, runtime: str, precision: str) -> Tolerance:
    atol, rtol = _BY_PRECISION[precision]
    factor = _FAMILY_FACTOR.get(family, 1.0)
    return Tolerance(atol=atol * factor, rtol=rtol * factor)


class Comparison(BaseModel):
    passed: bool
    max_abs_diff: float
    max_rel_diff: float
    worst_output: str | None
    per_output: dict[str, float]
    message: str


def compare_outputs(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], tolerance: Tolerance) -> Comparison:
    """Compare every output by name: same names, same shapes, finite, and within tolerance."""
    problems: list[str] = []
    if set(actual) != set(expected):
        problems.append(f"outputs {sorted(actual)} differ from the reference's {sorted(expected)}")
    per_output: dict[str, float] = {}
    worst, worst_abs, worst_rel, worst_excess = None, 0.0, 0.0, -np.inf
    for name in [n for n in expected if n in actual]:
        got = np.asarray(actual[name], dtype=np.float64)
        want = np.asarray(expected[name], dtype=np.float64)
        if got.shape != want.shape:
            problems.append(f"{name} has shape {list(got.shape)}, the reference {list(want.shape)}")
            continue
        if not np.isfinite(got).all():
            problems.append(f"{name} has NaN or Inf values")
            continue
        diff = np.abs(got - want)
        per_output[name] = float(diff.max()) if diff.size else 0.0
        excess = float((diff - (tolerance.atol + tolerance.rtol * np.abs(want))).max()) if diff.size else -1.0
        rel = float((diff / (np.abs(want) + tolerance.atol)).max()) if diff.size else 0.0
        worst_rel = max(worst_rel, rel)
        if excess > worst_excess:
            worst, worst_abs, worst_excess = name, per_output[name], excess
    if worst_excess > 0:
        problems.append(
            f"{worst} differs from the reference by up to {worst_abs:.3g} "
            f"(tolerance {tolerance.atol:g} + {tolerance.rtol:g} x |reference|)"
        )
    max_abs = max(per_output.values(), default=0.0)
    within = f"within {tolerance.atol:g} + {tolerance.rtol:g} x |reference|"
    message = "; ".join(problems) if problems else f"max difference {max_abs:.3g} (in {worst}), {within}"
    return Comparison(
        passed=not problems,
        max_abs_diff=max_abs,
        max_rel_diff=worst_rel,
        worst_output=worst,
        per_output=per_output,
        message=message,
    )
