"""Checks of a skill's life: it imports and loads, refuses bad input, and frees its runtime on close."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from accel.tasks.check_context import Context, Verdict
from accel.tasks.skill_module import import_skill

LOAD_CLOSE_CYCLES = 3
SKILL_MODULE_NAME = "_accel_skill_under_test"


def check_loads(ctx: Context) -> dict[str, Any]:
    rss = psutil.Process().memory_info().rss
    try:
        ctx.skill_module = import_skill(ctx.skill_path / "skill.py", SKILL_MODULE_NAME)
    except BaseException as err:  # SystemExit or KeyboardInterrupt at import is the skill's fault too
        raise Verdict("error", f"skill.py does not import: {type(err).__name__}: {err}"[:2000]) from None
    ctx.skill = ctx.skill_module.Skill().load()
    return {
        "message": f"loaded in {ctx.skill.load_seconds:.3f} s",
        "details": {
            "load_s": ctx.skill.load_seconds,
            "rss_growth_bytes": psutil.Process().memory_info().rss - rss,
        },
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
    artifact = ctx.manifest.artifact.bytes or 0
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
