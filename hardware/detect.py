"""`detect()`: the whole HardwareProfile of this machine, from real probes only."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType

from accel.hardware.accelerators import detect_cuda, detect_mps, detect_nvml, detect_rocm, detect_xpu
from accel.hardware.cpu import detect_cpu, detect_host, detect_memory
from accel.hardware.profile import HardwareProfile
from accel.hardware.runtimes import RUNTIME_SPECS, import_failure

# Besides the runtimes (each under its own distributions, from hardware/runtimes).
LIBRARIES = ("transformers", "tokenizers", "onnx", "numpy", "prefect", "duckdb", "accel")


def _installed(*distributions: str) -> str | None:
    for dist in distributions:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing imported)."""
    found = {spec.name: _installed(*spec.distributions) for spec in RUNTIME_SPECS}
    found.update({name: _installed(name) for name in LIBRARIES})
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
    runtimes = {spec.name: spec.detect(accelerators, torch, torch_reason) for spec in RUNTIME_SPECS}
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


# What decides which devices and cores a process sees, beside the machine itself.
_VISIBILITY_ENV = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


def _profile_key() -> dict[str, object]:
    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    return {
        "boot": read("/proc/sys/kernel/random/boot_id"),
        "cgroup_cpu": read("/sys/fs/cgroup/cpu.max"),
        "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": sys.executable,
        "libraries": library_versions(),
        "env": {name: os.environ.get(name) for name in _VISIBILITY_ENV},
    }


def detect_once_per_boot(cache_file: Path) -> HardwareProfile:
    """detect(), kept in `cache_file` until the machine reboots or what a process sees of it changes
    (library versions, the visible devices, its cores); the free memory is read fresh each time.

    For the environment row each run records: a flow-run process would otherwise import torch, ONNX
    Runtime and OpenVINO (about a second) to find what the previous run found. `accel hardware` and
    `accel targets` always probe.
    """
    key = _profile_key()
    if key["boot"] is not None:
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key:
                profile = HardwareProfile.model_validate(cached["profile"])
                return profile.model_copy(update={"memory": detect_memory()})
        except (OSError, ValueError, KeyError):
            pass
    profile = detect()
    if key["boot"] is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            staging = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            staging.write_text(json.dumps({"key": key, "profile": profile.model_dump(mode="json")}))
            staging.replace(cache_file)
        except OSError:
            pass  # detected again next time
    return profile
