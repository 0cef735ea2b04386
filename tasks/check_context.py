"""What every check works with: the skill under test, its trusted twin, its manifest, and the verdict types.

The trusted twin (`pristine`) is the skill as accel's own template renders it for the manifest: its
inputs and its reference model are what a check compares with, never the skill under test's claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from accel.tasks.manifest import Manifest
from accel.tasks.tolerances import Tolerance, tolerance_for

CheckStatus = Literal["passed", "failed", "skipped", "error"]
TEXT_FAMILIES = ("text-encoder", "text-generation", "text2text")


class CheckResult(BaseModel):
    check: str
    status: CheckStatus
    duration_s: float = 0.0
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    tolerance: float | None = Field(
        None, description="The absolute limit applied to the output nearest it: atol + rtol x its max |value|."
    )
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Verdict(Exception):
    """Raised by a check to end with a status other than passed (failed, error, or skipped when not applicable)."""

    def __init__(self, status: CheckStatus, message: str, **numbers: Any):
        super().__init__(message)
        self.status = status
        self.numbers = numbers


def check_lengths(dims: dict[str, Any]) -> tuple[int | None, int | None]:
    """Two sequence lengths that differ from each other and from the export example's (None: no seq axis)."""
    seq = dims.get("seq")
    if seq is None:
        return None, None
    default, low, high = seq["default"], seq["min"], seq["max"] or seq["default"] + 64
    candidates = [n for n in (default // 2, default + 5, default - 3, default + 1, low) if low <= n <= high]
    first = next(n for n in candidates if n != default)
    second = next((n for n in candidates if n not in (default, first)), first)
    return first, second


@dataclass
class Context:
    skill_path: Path  # the skill's folder; `loads` imports its skill.py
    pristine: ModuleType  # the same skill rendered again by accel: trusted inputs and reference
    manifest: Manifest
    tolerance: Tolerance | None = None  # the family's, unless a caller (calibration) sets another
    skill_module: ModuleType | None = None
    skill: Any = None
    outputs: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = field(default_factory=list)
    _reference: Any = None

    def __post_init__(self) -> None:
        if self.tolerance is None:
            target = self.manifest.target
            self.tolerance = tolerance_for(self.family, target.runtime, target.precision)

    @property
    def family(self) -> str:
        return self.manifest.model.family

    def reference_module(self) -> Any:
        if self._reference is None:
            self._reference = self.pristine.build_reference()
        return self._reference

    def reference(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.pristine.run_reference(self.reference_module(), self.pristine.check_inputs(inputs))

    def lengths(self) -> tuple[int | None, int | None]:
        return check_lengths(self.pristine.DIMS)

    def inputs(self, batch: int, seq: int | None, seed: int) -> dict[str, np.ndarray]:
        return self.pristine.make_inputs(batch, seq, seed)

    @property
    def pad_token(self) -> int:
        return int((self.manifest.generation or {}).get("pad_token_id", 0))

    @property
    def pads_left(self) -> bool:
        """Causal decoders are padded on the left (their tokenizer and batched generation do so)."""
        return self.family == "text-generation"

    def pad(self, inputs: dict[str, np.ndarray], extra: int) -> dict[str, np.ndarray]:
        """`inputs` with `extra` padding positions (mask 0, the pad token) on the side this family pads."""
        padded = dict(inputs)
        for name, spec in self.pristine.INPUTS.items():
            if "seq" not in spec["shape"]:
                continue
            axis = spec["shape"].index("seq")
            fill = 0 if spec["kind"] == "mask" else self.pad_token
            pad = np.full((*inputs[name].shape[:axis], extra), fill, dtype=inputs[name].dtype)
            parts = [pad, inputs[name]] if self.pads_left else [inputs[name], pad]
            padded[name] = np.concatenate(parts, axis=axis)
        return padded


def expected_shape(spec: list, batch: int, seq: int | None) -> list[int | None]:
    sizes = {"batch": batch, "seq": seq}
    return [sizes.get(d) if isinstance(d, str) else d for d in spec]


def rows(outputs: dict[str, np.ndarray], row: int, shapes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Row `row` of batched outputs, as the call on that row alone returns it: every batch axis indexed,
    so a batch x batch output (CLIP's image-text logits) gives its diagonal entry."""
    picked = {}
    for name, value in outputs.items():
        axes = shapes.get(name, {}).get("shape", ["batch"])
        index = tuple(slice(row, row + 1) if axis == "batch" else slice(None) for axis in axes)
        picked[name] = value[index]
    return picked
