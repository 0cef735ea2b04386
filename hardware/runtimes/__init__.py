"""Inference runtimes, one module each (torch, onnxruntime, openvino), and their registry.

A runtime is one module here (what accel generates for it per hardware, its devices, its detection, its
exporters, what its template needs) plus one template, tasks/templates/runtimes/<name>.py.j2. Everything
else derives from this registry: the runtime names, aliases and precisions of hardware/targets.py, the
runtimes `detect()` probes, the GEMMs of the peak FLOP/s probe, and the exporters generation tries.
Adding a runtime is adding one module here, one template, and its line in RUNTIME_SPECS.
"""

from __future__ import annotations

from accel.hardware.runtimes import onnxruntime, openvino, torch
from accel.hardware.runtimes.spec import RuntimeSpec, import_failure

RUNTIME_SPECS: tuple[RuntimeSpec, ...] = (torch.SPEC, onnxruntime.SPEC, openvino.SPEC)
RUNTIMES_BY_NAME: dict[str, RuntimeSpec] = {spec.name: spec for spec in RUNTIME_SPECS}


def runtime_spec(name: str) -> RuntimeSpec:
    """The runtime called `name` (canonical name); KeyError names the ones there are."""
    try:
        return RUNTIMES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}: accel has {', '.join(RUNTIMES_BY_NAME)}") from None


__all__ = ["RUNTIMES_BY_NAME", "RUNTIME_SPECS", "RuntimeSpec", "import_failure", "runtime_spec"]
