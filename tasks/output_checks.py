"""Checks of what a skill computes: shapes, finiteness, parity with the reference, and invariances."""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.tasks.check_context import TEXT_FAMILIES, Context, Verdict, expected_shape, rows
from accel.tasks.tolerances import Comparison, Tolerance, compare_outputs


def comparison_numbers(comparison: Comparison, tolerance: Tolerance, **details: Any) -> dict[str, Any]:
    """A comparison as a check result's figures."""
    return {
        "max_abs_diff": comparison.max_abs_diff,
        "max_rel_diff": comparison.max_rel_diff,
        "tolerance": comparison.limit if comparison.limit is not None else tolerance.atol,
        "details": {
            "atol": tolerance.atol,
            "worst_output": comparison.worst_output,
            "per_output": comparison.per_output,
            "rtol": tolerance.rtol,
            **details,
        },
    }


def check_forward_shapes(ctx: Context) -> dict[str, Any]:
    first, second = ctx.lengths()
    expected_outputs = ctx.manifest.outputs
    seen = []
    for batch, seq, seed in ((1, first, 11), (3, second, 12)):
        inputs = ctx.inputs(batch, seq, seed)
        outputs = ctx.skill(inputs)
        ctx.outputs.append((inputs, outputs))
        if set(outputs) != set(expected_outputs):
            raise Verdict("failed", f"batch {batch}: outputs {sorted(outputs)}, expected {sorted(expected_outputs)}")
        for name, spec in expected_outputs.items():
            want = expected_shape(spec["shape"], batch, seq)
            got = list(np.shape(outputs[name]))
            if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=False)):
                raise Verdict("failed", f"batch {batch}, seq {seq}: {name} has shape {got}, expected {want}")
            if np.asarray(outputs[name]).dtype.kind != np.dtype(spec["dtype"]).kind:
                raise Verdict("failed", f"{name} is {np.asarray(outputs[name]).dtype}, expected {spec['dtype']}")
        seen.append({"batch": batch, "seq": seq})
    return {"message": f"output names, shapes and dtypes right for {seen}", "details": {"shapes": seen}}


def nonfinite_outputs(outputs: dict[str, np.ndarray]) -> list[str]:
    return sorted(
        name for name, value in outputs.items() if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()
    )


def check_finite(ctx: Context) -> dict[str, Any]:
    if not ctx.outputs:
        raise Verdict("skipped", "no outputs to look at: forward_shapes did not run")
    bad = sorted({name for _, outputs in ctx.outputs for name in nonfinite_outputs(outputs)})
    if bad:
        raise Verdict("failed", f"NaN or Inf in {', '.join(bad)}")
    return {"message": "no NaN or Inf in any output"}


def check_parity(ctx: Context) -> dict[str, Any]:
    tol = ctx.tolerance
    first, second = ctx.lengths()
    worst = None
    for seq, seed in ((first, 21), (second, 22)):  # single rows: batching is batch_invariance's job
        inputs = ctx.inputs(1, seq, seed)
        comparison = compare_outputs(ctx.skill(inputs), ctx.reference(inputs), tol)
        if worst is None or comparison.max_abs_diff > worst.max_abs_diff or not comparison.passed:
            worst = comparison
        if not comparison.passed:
            break
    numbers = comparison_numbers(worst, tol, revision=ctx.manifest.model.revision)
    if not worst.passed:
        raise Verdict("failed", worst.message, **numbers)
    return {"message": worst.message, **numbers}


def check_determinism(ctx: Context) -> dict[str, Any]:
    # CPU kernels are deterministic; GPU ones may reorder floating-point sums between calls.
    tol = Tolerance(atol=0.0 if ctx.manifest.target.hardware == "cpu" else 1e-5, rtol=0.0)
    inputs = ctx.inputs(2, ctx.lengths()[0], 31)
    first, second = ctx.skill(inputs), ctx.skill(inputs)
    comparison = compare_outputs(second, first, tol, "the first call")
    numbers = comparison_numbers(comparison, tol)
    if not comparison.passed:
        raise Verdict("failed", f"two calls on the same inputs differ: {comparison.message}", **numbers)
    return {"message": f"identical outputs on two calls (allowed difference {tol.atol:g})", **numbers}


def check_batch_invariance(ctx: Context) -> dict[str, Any]:
    tol = ctx.tolerance
    inputs = ctx.inputs(3, ctx.lengths()[0], 41)
    batched = ctx.skill(inputs)
    worst = None
    for row in range(3):
        alone = ctx.skill({name: value[row : row + 1] for name, value in inputs.items()})
        comparison = compare_outputs(rows(batched, row, ctx.manifest.outputs), alone, tol, "the row alone")
        if worst is None or comparison.max_abs_diff > worst.max_abs_diff:
            worst = comparison
        if not comparison.passed:
            raise Verdict(
                "failed",
                f"row {row} of a batch of 3 differs from the same row alone: {comparison.message}",
                **comparison_numbers(comparison, tol),
            )
    return {
        "message": f"each row of a batch of 3 equals it alone (max |diff| {worst.max_abs_diff:.3g})",
        **comparison_numbers(worst, tol),
    }


def real_positions(ctx: Context, outputs: dict[str, np.ndarray], seq: int, extra: int) -> dict[str, np.ndarray]:
    """The outputs at the `seq` real tokens of an input padded with `extra` positions."""
    real = {}
    for name, value in outputs.items():
        shape = ctx.manifest.outputs.get(name, {}).get("shape", [])
        if "seq" in shape and value.shape[shape.index("seq")] == seq + extra:
            start = extra if ctx.pads_left else 0
            real[name] = np.take(value, np.arange(start, start + seq), axis=shape.index("seq"))
        else:
            real[name] = value
    return real


def check_padding_invariance(ctx: Context) -> dict[str, Any]:
    if ctx.family not in TEXT_FAMILIES or "attention_mask" not in ctx.pristine.INPUTS:
        raise Verdict("skipped", f"not a padded text input ({ctx.family})")
    tol = ctx.tolerance
    seq = ctx.lengths()[0]
    extra = 5
    limit = ctx.pristine.DIMS["seq"]["max"]
    if limit is not None and seq + extra > limit:
        extra = limit - seq
    if extra <= 0:
        raise Verdict("skipped", f"no room to pad: {seq} tokens of at most {limit}")
    side = "left" if ctx.pads_left else "right"
    inputs = ctx.inputs(2, seq, 51)
    plain = ctx.skill(inputs)
    real = real_positions(ctx, ctx.skill(ctx.pad(inputs, extra)), seq, extra)
    comparison = compare_outputs(real, plain, tol, "the unpadded call")
    numbers = comparison_numbers(comparison, tol, side=side)
    if not comparison.passed:
        raise Verdict(
            "failed", f"{extra} padding positions on the {side} change the real tokens: {comparison.message}", **numbers
        )
    return {
        "message": f"{extra} padding positions on the {side} (mask 0) leave the real tokens' outputs unchanged "
        f"(max |diff| {comparison.max_abs_diff:.3g})",
        **numbers,
    }
