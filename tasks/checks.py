"""The checks of the test stage, declared once: what each runs, at which levels, and what it needs first.

They run in the check runner's process, beside the skill under test. Every verdict comes from
running the skill and comparing it with something independent of it: the reference transformers
model as accel's own template builds it (rendered again from the manifest, never taken from the skill
under test), the skill itself on other inputs, or what the manifest says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accel.tasks.check_context import CheckResult, CheckStatus, Context, Verdict
from accel.tasks.errors import SkillDirError
from accel.tasks.generation_checks import check_generation_parity, check_kv_cache
from accel.tasks.levels import LEVEL_NAMES
from accel.tasks.lifecycle_checks import check_bad_input, check_load_close_cycle, check_loads
from accel.tasks.output_checks import (
    check_batch_invariance,
    check_determinism,
    check_finite,
    check_forward_shapes,
    check_padding_invariance,
    check_parity,
)
from accel.tasks.real_input_check import check_real_input

__all__ = ["CHECKS", "LEVELS", "CheckResult", "CheckStatus", "Context", "Verdict", "check_timeout", "run_check"]

DEFAULT_CHECK_TIMEOUT_S = 300.0  # how long one check may take before it is an error
MIN_CHECK_TIMEOUT_S = 1.0  # below this no check of any model can finish: refused, never all-skipped
STARTUP_TIMEOUT_S = 600.0  # the check process's own start (imports, the reference rendered), apart


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], dict[str, Any]]
    levels: tuple[str, ...]
    # Checks that must have passed first; when one did not, this check is skipped and says why.
    needs: tuple[str, ...] = ("loads",)


_ALL = LEVEL_NAMES
CHECKS: dict[str, Check] = {
    check.name: check
    for check in (
        Check("loads", check_loads, _ALL, needs=()),
        Check("forward_shapes", check_forward_shapes, _ALL),
        Check("finite", check_finite, _ALL, needs=("loads", "forward_shapes")),
        Check("parity", check_parity, _ALL),
        Check("determinism", check_determinism, ("comprehensive",)),
        Check("batch_invariance", check_batch_invariance, ("comprehensive",)),
        Check("padding_invariance", check_padding_invariance, ("comprehensive",)),
        Check("generation_parity", check_generation_parity, ("comprehensive",)),
        Check("kv_cache", check_kv_cache, ("comprehensive",)),
        Check("real_input", check_real_input, ("comprehensive",)),
        Check("bad_input", check_bad_input, ("comprehensive", "fault_tolerance")),
        Check("load_close_cycle", check_load_close_cycle, ("fault_tolerance",)),
    )
}
LEVELS: dict[str, tuple[str, ...]] = {
    level: tuple(name for name, check in CHECKS.items() if level in check.levels) for level in LEVEL_NAMES
}


def check_timeout(timeout_s: float) -> None:
    """Refuse a per-check timeout no check can meet: it would only ever give errors, never a verdict."""
    if not timeout_s >= MIN_CHECK_TIMEOUT_S:  # also refuses NaN
        raise SkillDirError(
            f"--timeout {timeout_s:g} s is too small: each check needs at least {MIN_CHECK_TIMEOUT_S:g} s"
        )


def run_check(name: str, ctx: Context) -> CheckResult:
    """One check's verdict; whatever the skill raises (SystemExit and KeyboardInterrupt included) is its error."""
    started = time.perf_counter()
    try:
        found = CHECKS[name].run(ctx)
        result = CheckResult(check=name, status="passed", **found)
    except Verdict as verdict:
        result = CheckResult(check=name, status=verdict.status, message=str(verdict), **verdict.numbers)
    except BaseException as err:  # the skill raised where it should have answered
        result = CheckResult(check=name, status="error", message=f"{type(err).__name__}: {err}"[:2000])
    result.duration_s = round(time.perf_counter() - started, 4)
    return result
