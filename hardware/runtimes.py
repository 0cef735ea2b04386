"""Inference runtimes (torch, onnxruntime, openvino): installed or not, and what each can run here."""

from __future__ import annotations

from types import ModuleType

from accel.hardware.profile import Accelerator, RuntimeInfo
from accel.hardware.targets import SUPPORTED_PRECISIONS


def _runtime(name: str, version: str | None, devices: list[str], found: dict[str, list[str] | str]) -> RuntimeInfo:
    """Build the RuntimeInfo from, per hardware kind, the precisions found or the reason it is absent.

    Only the precisions accel also supports are kept; every hardware accel supports for this runtime
    gets either precisions or a reason.
    """
    precisions: dict[str, list[str]] = {}
    unavailable: dict[str, str] = {}
    for (hw, rt), supported in SUPPORTED_PRECISIONS.items():
        if rt != name:
            continue
        here = found.get(hw, f"{name} cannot run on {hw} here")
        if isinstance(here, str):
            unavailable[hw] = here
        elif usable := [p for p in supported if p in here]:
            precisions[hw] = usable
        else:
            unavailable[hw] = f"{name} on this {hw} supports none of {', '.join(supported)}"
    return RuntimeInfo(
        name=name,
        installed=True,
        version=version,
        devices=devices,
        hardware=list(precisions),
        precisions=precisions,
        unavailable=unavailable,
    )


def import_failure(name: str, err: BaseException) -> str:
    if isinstance(err, ModuleNotFoundError):
        return f"{name} is not installed"
    return f"{name} is installed but failed to import: {type(err).__name__}: {err}"


def detect_torch(torch: ModuleType | None, reason: str | None, accelerators: dict[str, Accelerator]) -> RuntimeInfo:
    if torch is None:
        return RuntimeInfo(name="torch", installed=False, reason=reason)
    found: dict[str, list[str] | str] = {"cpu": ["fp32", "bf16"]}
    for hw in ("cuda", "rocm", "mps", "xpu"):
        accel = accelerators[hw]
        if not accel.available:
            found[hw] = accel.reason or f"no {hw} device"
        elif hw in ("cuda", "rocm"):
            found[hw] = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        elif hw == "mps":
            found[hw] = ["fp32", "fp16"]
        else:
            found[hw] = ["fp32", "fp16", "bf16"]
    devices = ["cpu"] + [hw for hw in ("cuda", "rocm", "mps", "xpu") if accelerators[hw].available]
    return _runtime("torch", torch.__version__, devices, found)


def _gpu_present(accelerators: dict[str, Accelerator], *names: str) -> str | None:
    """None when one of the named probes sees a device, else the first probe's reason."""
    if any(accelerators[n].available for n in names):
        return None
    return accelerators[names[0]].reason or f"no {names[0]} device"


def detect_onnxruntime(accelerators: dict[str, Accelerator]) -> RuntimeInfo:
    try:
        import onnxruntime
    except Exception as err:  # a broken native install raises more than ImportError
        return RuntimeInfo(name="onnxruntime", installed=False, reason=import_failure("onnxruntime", err))
    providers = onnxruntime.get_available_providers()
    found: dict[str, list[str] | str] = {}
    if "CPUExecutionProvider" in providers:
        found["cpu"] = ["fp32", "int8"]
    # onnxruntime-gpu lists its GPU providers even on machines without a GPU: require the device too.
    if "CUDAExecutionProvider" not in providers:
        found["cuda"] = "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    else:
        found["cuda"] = _gpu_present(accelerators, "cuda", "nvml") or ["fp32", "fp16"]
    if not {"ROCMExecutionProvider", "MIGraphXExecutionProvider"} & set(providers):
        found["rocm"] = "onnxruntime has no ROCm or MIGraphX execution provider (install onnxruntime-rocm)"
    else:
        found["rocm"] = _gpu_present(accelerators, "rocm") or ["fp32", "fp16"]
    return _runtime("onnxruntime", onnxruntime.__version__, providers, found)


def detect_openvino() -> RuntimeInfo:
    try:
        import openvino
    except Exception as err:
        return RuntimeInfo(name="openvino", installed=False, reason=import_failure("openvino", err))
    core = openvino.Core()
    devices = list(core.available_devices)
    found: dict[str, list[str] | str] = {
        "cpu": "OpenVINO reports no CPU device",
        "xpu": "OpenVINO reports no Intel GPU device",
    }
    for device in devices:
        # The device's own list of what it computes natively: BF16 on CPUs with AVX512_BF16 or AMX.
        caps = [str(c).upper() for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
        precisions = ["fp32"] + [p for p in ("fp16", "bf16") if p.upper() in caps]
        if device == "CPU":
            found["cpu"] = precisions
        elif device.startswith("GPU") and isinstance(found["xpu"], str):  # Intel GPUs: accel's xpu
            found["xpu"] = precisions
    return _runtime("openvino", openvino.__version__.split("-")[0], devices, found)
