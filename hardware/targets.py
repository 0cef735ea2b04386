"""Targets: `HARDWARE/RUNTIME[:PRECISION]`, what accel supports, and which work pool runs each."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from accel.hardware.profile import HardwareProfile

from accel.hardware.runtimes import RUNTIME_SPECS, RUNTIMES_BY_NAME
from accel.hardware.runtimes.torch import TORCH_DTYPES as TORCH_DTYPES  # the torch dtype of each precision

Hardware = Literal["cpu", "cuda", "rocm", "mps", "xpu"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]

HARDWARE: tuple[str, ...] = get_args(Hardware)
# The runtimes are the registry's (hardware/runtimes): one module each.
RUNTIMES: tuple[str, ...] = tuple(spec.name for spec in RUNTIME_SPECS)
Runtime = Literal[RUNTIMES]  # type: ignore[valid-type]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_PRECISION = "fp32"

# What accel can generate, per hardware and runtime (the software side). Whether this machine can
# run it is a separate question, answered from a HardwareProfile by `target_status`.
SUPPORTED_PRECISIONS: dict[tuple[str, str], tuple[str, ...]] = {
    (hw, spec.name): precisions for spec in RUNTIME_SPECS for hw, precisions in spec.precisions.items()
}

# Short names people type; the canonical name is what gets stored.
_RUNTIME_ALIASES = {alias: spec.name for spec in RUNTIME_SPECS for alias in spec.aliases}
_PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_TARGET_RE = re.compile(r"^(?P<hardware>[a-z0-9]+)/(?P<runtime>[a-z0-9_]+)(?::(?P<precision>[a-z0-9]+))?$")

ACCEPTED = (
    "expected HARDWARE/RUNTIME[:PRECISION], e.g. cpu/torch, cpu/onnxruntime, cuda/torch:fp16; "
    f"hardware: {', '.join(HARDWARE)}; runtimes: {', '.join(RUNTIMES)}; "
    f"precisions: {', '.join(PRECISIONS)} (default {DEFAULT_PRECISION})"
)


class TargetError(ValueError):
    """A target string that is malformed, or a combination accel does not support."""


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)

    hardware: Hardware
    runtime: Runtime
    precision: Precision = DEFAULT_PRECISION

    @classmethod
    def parse(cls, text: str | Target) -> Target:
        if isinstance(text, Target):
            return text
        raw = str(text).strip()
        match = _TARGET_RE.match(raw.lower())
        if not match:
            raise TargetError(f"malformed target {raw!r}: {ACCEPTED}")
        hardware = match["hardware"]
        runtime = _RUNTIME_ALIASES.get(match["runtime"], match["runtime"])
        precision = match["precision"] or DEFAULT_PRECISION
        precision = _PRECISION_ALIASES.get(precision, precision)
        if hardware not in HARDWARE:
            raise TargetError(f"unknown hardware {hardware!r} in target {raw!r}: {ACCEPTED}")
        if runtime not in RUNTIMES:
            raise TargetError(f"unknown runtime {match['runtime']!r} in target {raw!r}: {ACCEPTED}")
        if precision not in PRECISIONS:
            raise TargetError(f"unknown precision {precision!r} in target {raw!r}: {ACCEPTED}")
        supported = SUPPORTED_PRECISIONS.get((hardware, runtime))
        if supported is None:
            runtimes = [rt for (hw, rt) in SUPPORTED_PRECISIONS if hw == hardware]
            raise TargetError(
                f"runtime {runtime} does not run on {hardware} (target {raw!r}); "
                f"on {hardware} accel supports: {', '.join(runtimes)}"
            )
        if precision not in supported:
            raise TargetError(
                f"precision {precision} is not supported for {hardware}/{runtime} (target {raw!r}); "
                f"supported: {', '.join(supported)}"
            )
        return cls(hardware=hardware, runtime=runtime, precision=precision)

    def __str__(self) -> str:
        base = f"{self.hardware}/{self.runtime}"
        return base if self.precision == DEFAULT_PRECISION else f"{base}:{self.precision}"

    @property
    def work_pool(self) -> str:
        return work_pool_name(self.hardware)

    @property
    def device(self) -> str:
        """The device as the skill's runtime names it (a torch device, an ONNX Runtime provider, ...)."""
        return RUNTIMES_BY_NAME[self.runtime].devices[self.hardware]

    @property
    def torch_device(self) -> str:
        """The torch device type of this hardware (where its reference model and torch exports run)."""
        return RUNTIMES_BY_NAME["torch"].devices[self.hardware]


def parse_targets(text: str | list[str]) -> list[Target]:
    """`"cpu/torch, cpu/openvino"` or a list of such strings -> targets, duplicates removed, order kept."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    targets: list[Target] = []
    for item in (i.strip() for i in items):
        if item and (target := Target.parse(item)) not in targets:
            targets.append(target)
    if not targets:
        raise TargetError(f"no target given: {ACCEPTED}")
    return targets


def work_pool_name(hardware: str) -> str:
    """The Prefect work pool whose workers run on `hardware` (`accel-cpu`, `accel-cuda`, ...)."""
    if hardware not in HARDWARE:
        raise TargetError(f"unknown hardware {hardware!r}: accepted: {', '.join(HARDWARE)}")
    return f"accel-{hardware}"


def all_targets() -> list[Target]:
    """Every target accel supports, on any machine."""
    return [
        Target(hardware=hw, runtime=rt, precision=p)
        for (hw, rt), precisions in SUPPORTED_PRECISIONS.items()
        for p in precisions
    ]


class TargetStatus(BaseModel):
    target: str
    hardware: str
    runtime: str
    precision: str
    work_pool: str
    available: bool
    reason: str | None = None


def target_status(target: Target, profile: HardwareProfile) -> TargetStatus:
    """Whether this machine (as `profile` describes it) can run `target`, and if not, why."""
    runtime = profile.runtimes.get(target.runtime)
    reason: str | None = None
    if runtime is None or not runtime.installed:
        reason = runtime.reason if runtime and runtime.reason else f"{target.runtime} is not installed"
    elif target.hardware not in runtime.precisions:
        reason = runtime.unavailable.get(target.hardware, f"{target.runtime} cannot run on {target.hardware}")
    elif target.precision not in runtime.precisions[target.hardware]:
        reason = (
            f"{target.runtime} on this {target.hardware} runs only {', '.join(runtime.precisions[target.hardware])}"
        )
    return TargetStatus(
        target=str(target),
        hardware=target.hardware,
        runtime=target.runtime,
        precision=target.precision,
        work_pool=target.work_pool,
        available=reason is None,
        reason=reason,
    )


def available_targets(profile: HardwareProfile) -> list[Target]:
    """The targets this machine can run."""
    return [t for t in all_targets() if target_status(t, profile).available]
