"""The checks of the test stage. They run in the check runner's process, beside the skill under test.

Every verdict comes from running the skill and comparing it with something independent of it: the
reference transformers model as accel's own template builds it (rendered again from the manifest,
never taken from the skill under test), the skill itself on other inputs, or what the manifest says.
"""

from __future__ import annotations

import gc
import time
import wave
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import psutil
from pydantic import BaseModel, Field

from accel.tasks.tolerances import Tolerance, compare_outputs, tolerance_for

CheckStatus = Literal["passed", "failed", "skipped", "error"]
DATA_DIR = Path(__file__).resolve().parent / "data"
TEXT_FAMILIES = ("text-encoder", "text-generation", "text2text")
GENERATION_TOKENS = 8
LOAD_CLOSE_CYCLES = 3


class CheckResult(BaseModel):
    check: str
    status: CheckStatus
    duration_s: float = 0.0
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    tolerance: float | None = Field(None, description="The absolute part of the tolerance applied.")
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Verdict(Exception):
    """Raised by a check to end with a status other than passed (failed, or skipped when not applicable)."""

    def __init__(self, status: CheckStatus, message: str, **numbers: Any):
        super().__init__(message)
        self.status = status
        self.numbers = numbers


@dataclass
class Context:
    skill_module: ModuleType
    pristine: ModuleType  # the same skill rendered again by accel: trusted inputs and reference
    manifest: dict[str, Any]
    skill: Any = None
    outputs: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = field(default_factory=list)
    _reference: Any = None

    @property
    def family(self) -> str:
        return self.manifest["model"]["family"]

    @property
    def tolerance(self) -> Tolerance:
        target = self.manifest["target"]
        return tolerance_for(self.family, target["runtime"], target["precision"])

    def reference_module(self) -> Any:
        if self._reference is None:
            self._reference = self.pristine.build_reference()
        return self._reference

    def reference(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.pristine.run_reference(self.reference_module(), self.pristine.check_inputs(inputs))

    def lengths(self) -> tuple[int | None, int | None]:
        """Two sequence lengths that differ from each other and from the export example's."""
        seq = self.pristine.DIMS.get("seq")
        if seq is None:
            return None, None
        default, low, high = seq["default"], seq["min"], seq["max"] or seq["default"] + 64
        candidates = [n for n in (default // 2, default + 5, default - 3, default + 1, low) if low <= n <= high]
        first = next(n for n in candidates if n != default)
        second = next((n for n in candidates if n not in (default, first)), first)
        return first, second

    def inputs(self, batch: int, seq: int | None, seed: int) -> dict[str, np.ndarray]:
        return self.pristine.make_inputs(batch, seq, seed)


def _expected_shape(spec: list, batch: int, seq: int | None) -> list[int | None]:
    sizes = {"batch": batch, "seq": seq}
    return [sizes.get(d) if isinstance(d, str) else d for d in spec]


def _rows(outputs: dict[str, np.ndarray], row: int, shapes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Row `row` of batched outputs, as the call on that row alone returns it: every batch axis indexed,
    so a batch x batch output (CLIP's image-text logits) gives its diagonal entry."""
    picked = {}
    for name, value in outputs.items():
        axes = shapes.get(name, {}).get("shape", ["batch"])
        index = tuple(slice(row, row + 1) if axis == "batch" else slice(None) for axis in axes)
        picked[name] = value[index]
    return picked


def _same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], atol: float, rtol: float):
    """(max |diff|, output where it is largest, passed); NaN equals NaN, so a NaN is the `finite` check's."""
    worst, where, passed = 0.0, None, set(actual) == set(expected)
    for name in expected:
        if name not in actual or np.shape(actual[name]) != np.shape(expected[name]):
            return float("inf"), name, False
        a = np.asarray(actual[name], np.float64)
        b = np.asarray(expected[name], np.float64)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)
        limit = atol + rtol * np.where(np.isfinite(b), np.abs(b), 0.0)
        if diff.size and diff.max() > worst:
            worst, where = float(diff.max()), name
        if diff.size and (diff > limit).any():
            passed = False
    return worst, where, passed


# The checks ------------------------------------------------------------------------------------------


def check_loads(ctx: Context) -> dict[str, Any]:
    rss = psutil.Process().memory_info().rss
    ctx.skill = ctx.skill_module.Skill().load()
    return {
        "message": f"loaded in {ctx.skill.load_seconds:.3f} s",
        "details": {
            "load_s": ctx.skill.load_seconds,
            "rss_growth_bytes": psutil.Process().memory_info().rss - rss,
        },
    }


def check_forward_shapes(ctx: Context) -> dict[str, Any]:
    first, second = ctx.lengths()
    expected_outputs = ctx.manifest["outputs"]
    seen = []
    for batch, seq, seed in ((1, first, 11), (3, second, 12)):
        inputs = ctx.inputs(batch, seq, seed)
        outputs = ctx.skill(inputs)
        ctx.outputs.append((inputs, outputs))
        if set(outputs) != set(expected_outputs):
            raise Verdict("failed", f"batch {batch}: outputs {sorted(outputs)}, expected {sorted(expected_outputs)}")
        for name, spec in expected_outputs.items():
            want = _expected_shape(spec["shape"], batch, seq)
            got = list(np.shape(outputs[name]))
            if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=False)):
                raise Verdict("failed", f"batch {batch}, seq {seq}: {name} has shape {got}, expected {want}")
            if np.asarray(outputs[name]).dtype.kind != np.dtype(spec["dtype"]).kind:
                raise Verdict("failed", f"{name} is {np.asarray(outputs[name]).dtype}, expected {spec['dtype']}")
        seen.append({"batch": batch, "seq": seq})
    return {"message": f"output names, shapes and dtypes right for {seen}", "details": {"shapes": seen}}


def check_finite(ctx: Context) -> dict[str, Any]:
    if not ctx.outputs:
        raise Verdict("skipped", "no outputs to look at: forward_shapes did not run")
    bad = sorted(
        {
            name
            for _, outputs in ctx.outputs
            for name, value in outputs.items()
            if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()
        }
    )
    if bad:
        raise Verdict("failed", f"NaN or Inf in {', '.join(bad)}")
    return {"message": "no NaN or Inf in any output"}


def check_parity(ctx: Context) -> dict[str, Any]:
    tol = ctx.tolerance
    first, second = ctx.lengths()
    worst = None
    for seq, seed in ((first, 21), (second, 22)):  # single rows: batching is batch_invariance's job
        inputs = ctx.inputs(1, seq, seed)
        actual = {k: np.where(np.isfinite(v), v, np.nan) for k, v in ctx.skill(inputs).items()}
        # Non-finite values are the `finite` check's: compare the rest.
        expected = ctx.reference(inputs)
        masked = {
            k: np.where(np.isnan(actual[k]), expected[k], actual[k]) if k in expected else v for k, v in actual.items()
        }
        comparison = compare_outputs(masked, expected, tol)
        if worst is None or comparison.max_abs_diff > worst.max_abs_diff or not comparison.passed:
            worst = comparison
        if not comparison.passed:
            break
    numbers = {
        "max_abs_diff": worst.max_abs_diff,
        "max_rel_diff": worst.max_rel_diff,
        "tolerance": tol.atol,
        "details": {
            "worst_output": worst.worst_output,
            "per_output": worst.per_output,
            "rtol": tol.rtol,
            "revision": ctx.manifest["model"]["revision"],
        },
    }
    if not worst.passed:
        raise Verdict("failed", worst.message, **numbers)
    return {"message": worst.message, **numbers}


def check_determinism(ctx: Context) -> dict[str, Any]:
    # CPU kernels are deterministic; GPU ones may reorder floating-point sums between calls.
    atol = 0.0 if ctx.manifest["target"]["hardware"] == "cpu" else 1e-5
    inputs = ctx.inputs(2, ctx.lengths()[0], 31)
    first, second = ctx.skill(inputs), ctx.skill(inputs)
    diff, where, passed = _same(second, first, atol, 0.0)
    if not passed:
        raise Verdict(
            "failed",
            f"two calls on the same inputs differ by up to {diff:.3g} in {where} (allowed {atol:g})",
            max_abs_diff=diff,
            tolerance=atol,
        )
    return {
        "message": f"identical outputs on two calls (allowed difference {atol:g})",
        "max_abs_diff": diff,
        "tolerance": atol,
    }


def check_batch_invariance(ctx: Context) -> dict[str, Any]:
    tol = ctx.tolerance
    inputs = ctx.inputs(3, ctx.lengths()[0], 41)
    batched = ctx.skill(inputs)
    worst = 0.0
    for row in range(3):
        alone = ctx.skill({name: value[row : row + 1] for name, value in inputs.items()})
        diff, where, passed = _same(_rows(batched, row, ctx.manifest["outputs"]), alone, tol.atol, tol.rtol)
        worst = max(worst, diff)
        if not passed:
            raise Verdict(
                "failed",
                f"row {row} of a batch of 3 differs from the same row alone by {diff:.3g} in {where}",
                max_abs_diff=diff,
                tolerance=tol.atol,
            )
    return {
        "message": f"each row of a batch of 3 equals it alone (max |diff| {worst:.3g})",
        "max_abs_diff": worst,
        "tolerance": tol.atol,
    }


def _pad_token(ctx: Context) -> int:
    generation = ctx.manifest.get("generation") or {}
    return int(generation.get("pad_token_id", 0))


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
    inputs = ctx.inputs(2, seq, 51)
    padded = dict(inputs)
    for name, spec in ctx.pristine.INPUTS.items():
        if "seq" in spec["shape"]:
            axis = spec["shape"].index("seq")
            fill = 0 if name == "attention_mask" else _pad_token(ctx)
            pad = np.full((*inputs[name].shape[:axis], extra), fill, dtype=inputs[name].dtype)
            padded[name] = np.concatenate([inputs[name], pad], axis=axis)
    plain, with_padding = ctx.skill(inputs), ctx.skill(padded)
    real = {}
    for name, value in with_padding.items():
        shape = ctx.manifest["outputs"].get(name, {}).get("shape", [])
        if "seq" in shape and value.shape[shape.index("seq")] == seq + extra:
            real[name] = np.take(value, np.arange(seq), axis=shape.index("seq"))
        else:
            real[name] = value
    diff, where, passed = _same(real, plain, tol.atol, tol.rtol)
    if not passed:
        raise Verdict(
            "failed",
            f"{extra} padding positions (mask 0) change {where} at real tokens by {diff:.3g}",
            max_abs_diff=diff,
            tolerance=tol.atol,
        )
    return {
        "message": f"{extra} padding positions leave the real tokens' outputs unchanged (max |diff| {diff:.3g})",
        "max_abs_diff": diff,
        "tolerance": tol.atol,
    }


def check_generation_parity(ctx: Context) -> dict[str, Any]:
    if ctx.manifest.get("generation") is None or not hasattr(ctx.skill, "generate"):
        raise Verdict("skipped", f"{ctx.manifest['model']['task']} does not generate")
    seq = ctx.lengths()[0]
    steps = GENERATION_TOKENS
    limit = ctx.pristine.DIMS["seq"]["max"]
    if limit is not None and ctx.family == "text-generation":
        steps = max(1, min(steps, limit - (seq or 0)))
    prompt = ctx.inputs(1, seq, 61)
    got = np.asarray(ctx.skill.generate(prompt, steps))
    trusted = ctx.pristine.Skill()  # never loaded: only its reference side runs
    trusted._reference = ctx.reference_module()
    want = np.asarray(trusted.reference_generate(prompt, steps))
    if got.shape != want.shape or not (got == want).all():
        raise Verdict("failed", f"greedy tokens {got.tolist()} differ from transformers' generate {want.tolist()}")
    return {
        "message": f"{want.shape[1]} greedy tokens equal transformers' generate",
        "details": {"tokens": want.tolist()},
    }


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
    raw = real_data(ctx.family, rate)
    inputs = ctx.skill.preprocess(raw)
    if set(inputs) != set(ctx.pristine.INPUTS):
        raise Verdict("failed", f"preprocess gave {sorted(inputs)}, the model takes {sorted(ctx.pristine.INPUTS)}")
    outputs = ctx.skill(inputs)
    batch = len(next(iter(inputs.values())))
    if set(outputs) != set(ctx.manifest["outputs"]) or any(len(v) != batch for v in outputs.values()):
        raise Verdict(
            "failed", f"a forward pass on real data gave { ({k: list(v.shape) for k, v in outputs.items()}) }"
        )
    shapes = {name: list(value.shape) for name, value in inputs.items()}
    return {
        "message": f"real {ctx.family} data through preprocess and a forward pass: inputs {shapes}",
        "details": {"inputs": shapes},
    }


def _expect_value_error(call: Callable[[], Any], what: str) -> str:
    try:
        call()
    except ValueError as err:
        if not str(err).strip():
            raise Verdict("failed", f"{what}: a ValueError without a message") from err
        return str(err)
    except Exception as err:  # any other failure is not a clear refusal
        raise Verdict("failed", f"{what}: raised {type(err).__name__}: {err}, not a ValueError") from err
    raise Verdict("failed", f"{what}: accepted without an error")


def check_bad_input(ctx: Context) -> dict[str, Any]:
    seq = ctx.lengths()[0]
    inputs = ctx.inputs(1, seq, 71)
    said = {
        "empty batch": _expect_value_error(lambda: ctx.skill({k: v[:0] for k, v in inputs.items()}), "an empty batch")
    }
    limit = ctx.pristine.DIMS.get("seq", {}).get("max") if ctx.pristine.DIMS.get("seq") else None
    if limit is not None:
        long = ctx.pristine.make_inputs(1, limit, 72)
        for name, spec in ctx.pristine.INPUTS.items():
            for axis, dim in enumerate(spec["shape"]):
                if dim in ("seq", "decoder_seq"):
                    long[name] = np.concatenate([long[name], np.take(long[name], [0], axis=axis)], axis=axis)
        said["too long"] = _expect_value_error(lambda: ctx.skill(long), f"a sequence of {limit + 1} > {limit}")
    backend = weakref.ref(ctx.skill._backend)
    ctx.skill.close()
    gc.collect()
    if backend() is not None:
        raise Verdict("failed", "close() left the runtime alive: something still holds it")
    try:
        ctx.skill(inputs)
    except RuntimeError:
        pass
    else:
        raise Verdict("failed", "a closed skill still answered a call")
    ctx.skill.load()
    return {
        "message": "; ".join(f"{k}: refused ({v[:80]})" for k, v in said.items()) + "; close() released the runtime",
        "details": said,
    }


def check_load_close_cycle(ctx: Context) -> dict[str, Any]:
    process = psutil.Process()
    ctx.skill.close()
    gc.collect()
    inputs = ctx.inputs(1, ctx.lengths()[0], 81)
    rss = []
    for _ in range(LOAD_CLOSE_CYCLES):
        ctx.skill.load()
        ctx.skill(inputs)
        ctx.skill.close()
        gc.collect()
        rss.append(process.memory_info().rss)
    ctx.skill.load()
    artifact = ctx.manifest["artifact"]["bytes"]
    allowed = max(64 << 20, artifact // 2)
    growth = rss[-1] - rss[0]
    details = {"rss_after_each_close": rss, "allowed_growth_bytes": allowed}
    if growth > allowed:
        raise Verdict(
            "failed",
            f"memory grew by {growth >> 20} MiB over {LOAD_CLOSE_CYCLES} load/close cycles "
            f"(allowed {allowed >> 20} MiB)",
            details=details,
        )
    return {
        "message": f"{LOAD_CLOSE_CYCLES} load/call/close cycles, memory growth {growth >> 20} MiB",
        "details": details,
    }


CHECKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "loads": check_loads,
    "forward_shapes": check_forward_shapes,
    "finite": check_finite,
    "parity": check_parity,
    "determinism": check_determinism,
    "batch_invariance": check_batch_invariance,
    "padding_invariance": check_padding_invariance,
    "generation_parity": check_generation_parity,
    "real_input": check_real_input,
    "bad_input": check_bad_input,
    "load_close_cycle": check_load_close_cycle,
}
_BASIC = ("loads", "forward_shapes", "finite", "parity")
LEVELS: dict[str, tuple[str, ...]] = {
    "basic": _BASIC,
    "comprehensive": tuple(c for c in CHECKS if c != "load_close_cycle"),
    "fault_tolerance": (*_BASIC, "bad_input", "load_close_cycle"),
}
DEFAULT_CHECK_TIMEOUT_S = 300.0  # how long one check may take before it is an error
# What a check needs to have passed first; when it did not, the check is skipped and says why.
NEEDS: dict[str, tuple[str, ...]] = {name: ("loads",) for name in CHECKS if name != "loads"}
NEEDS["finite"] = ("loads", "forward_shapes")


def run_check(name: str, ctx: Context) -> CheckResult:
    started = time.perf_counter()
    try:
        found = CHECKS[name](ctx)
        result = CheckResult(check=name, status="passed", **found)
    except Verdict as verdict:
        result = CheckResult(check=name, status=verdict.status, message=str(verdict), **verdict.numbers)
    except Exception as err:  # the skill raised where it should have answered
        result = CheckResult(check=name, status="error", message=f"{type(err).__name__}: {err}"[:2000])
    result.duration_s = round(time.perf_counter() - started, 4)
    return result
