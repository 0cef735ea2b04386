"""What one inference runtime is to accel: a `RuntimeSpec`, and the helpers its detection shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal

from accel.hardware.profile import Accelerator, RuntimeInfo

# What each runtime's detection is given: the accelerator probes, and torch (imported once for all of them).
Detect = Callable[[dict[str, Accelerator], ModuleType | None, str | None], RuntimeInfo]
# A large CPU fp32 matrix product of the runtime's own GEMM, for the peak FLOP/s probe: (n, threads) -> call.
CpuGemm = Callable[[int, int | None], Callable[[], None]]


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime: what accel generates for it, where it runs, and how its skill's artifact is made.

    Everything else of a runtime is its template, tasks/templates/runtimes/<name>.py.j2 (the `_Backend`
    class a skill runs with).
    """

    name: str
    # hardware -> the precisions accel generates for it there (fp32 first). Whether this machine can run
    # one is detection's answer.
    precisions: dict[str, tuple[str, ...]]
    # hardware -> the device as the skill names it (a torch device, an ONNX Runtime provider, an OpenVINO device)
    devices: dict[str, str]
    # The exporters to try, in order, and the artifact file each writes.
    exporters: tuple[tuple[str, str], ...]
    # "onnx": the artifact is an ONNX graph (shared by every ONNX runtime of a model: tasks/export_cache);
    # "torch": a torch program exported for this target's device and dtype.
    graph: Literal["onnx", "torch"]
    detect: Detect
    aliases: tuple[str, ...] = ()
    # Distributions whose installed version is this runtime's (the first one found), read from metadata.
    distributions: tuple[str, ...] = ()
    cpu_gemm: CpuGemm | None = None
    # precision -> extra constants the skill's template needs, as (name, value) pairs.
    template_constants: Callable[[str], dict[str, str]] = field(default=lambda precision: {})
    # The precision whose artifact is made by quantizing the fp32 graph (tasks/export.quantize_int8), if any.
    quantized: str | None = None
    # hardware -> exporters tried before `exporters` for a decoder-only graph with a KV cache (one that
    # decodes a token per call, where the graph's own overhead per step is what a user waits for).
    cached_decoder_exporters: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def supports(self, hardware: str) -> bool:
        return hardware in self.precisions

    def exporters_for(self, hardware: str, cached_decoder: bool) -> tuple[tuple[str, str], ...]:
        """The exporters to try, in order, on `hardware` for a graph that is (or is not) a decoder with a
        KV cache."""
        first = self.cached_decoder_exporters.get(hardware, ()) if cached_decoder else ()
        return (*first, *self.exporters)


def import_failure(name: str, err: BaseException) -> str:
    if isinstance(err, ModuleNotFoundError):
        return f"{name} is not installed"
    return f"{name} is installed but failed to import: {type(err).__name__}: {err}"


def runtime_info(
    spec: RuntimeSpec, version: str | None, devices: list[str], found: dict[str, list[str] | str]
) -> RuntimeInfo:
    """The RuntimeInfo from, per hardware kind, the precisions found or the reason it is absent.

    Only the precisions accel also supports are kept; every hardware accel supports for this runtime
    gets either precisions or a reason.
    """
    precisions: dict[str, list[str]] = {}
    unavailable: dict[str, str] = {}
    for hw, supported in spec.precisions.items():
        here = found.get(hw, f"{spec.name} cannot run on {hw} here")
        if isinstance(here, str):
            unavailable[hw] = here
        elif usable := [p for p in supported if p in here]:
            precisions[hw] = usable
        else:
            unavailable[hw] = f"{spec.name} on this {hw} supports none of {', '.join(supported)}"
    return RuntimeInfo(
        name=spec.name,
        installed=True,
        version=version,
        devices=devices,
        hardware=list(precisions),
        precisions=precisions,
        unavailable=unavailable,
    )


def gpu_present(accelerators: dict[str, Accelerator], *names: str) -> str | None:
    """None when one of the named probes sees a device, else the first probe's reason."""
    if any(accelerators[n].available for n in names):
        return None
    return accelerators[names[0]].reason or f"no {names[0]} device"
