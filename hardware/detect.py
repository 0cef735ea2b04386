"""`detect()`: the whole HardwareProfile of this machine, from real probes only."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from accel.hardware.accelerators import detect_cuda, detect_mps, detect_nvml, detect_rocm, detect_xpu
from accel.hardware.cpu import detect_cpu, detect_host, detect_memory
from accel.hardware.profile import HardwareProfile
from accel.hardware.runtimes import detect_onnxruntime, detect_openvino, detect_torch, import_failure

LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "openvino",
    "numpy",
    "prefect",
    "duckdb",
    "accel",
)


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing imported)."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    if found.get("onnxruntime") is None:  # the GPU build installs under another distribution name
        for dist in ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-rocm"):
            try:
                found["onnxruntime"] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return found


def _import_torch() -> tuple[ModuleType | None, str | None]:
    try:
        import torch
    except Exception as err:
        return None, import_failure("torch", err)
    return torch, None


def detect() -> HardwareProfile:
    torch, torch_reason = _import_torch()
    accelerators = {
        "cuda": detect_cuda(torch, torch_reason),
        "rocm": detect_rocm(torch, torch_reason),
        "mps": detect_mps(torch, torch_reason),
        "xpu": detect_xpu(torch, torch_reason),
        "nvml": detect_nvml(),
    }
    runtimes = {
        "torch": detect_torch(torch, torch_reason, accelerators),
        "onnxruntime": detect_onnxruntime(accelerators),
        "openvino": detect_openvino(),
    }
    capability = torch.backends.cpu.get_cpu_capability() if torch is not None else None
    return HardwareProfile(
        host=detect_host(),
        cpu=detect_cpu(torch_capability=capability),
        memory=detect_memory(),
        accelerators=accelerators,
        runtimes=runtimes,
        libraries=library_versions(),
        detected_at=datetime.now(UTC),
    )
