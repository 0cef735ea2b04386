"""The results store's view of a machine: a HardwareProfile as an EnvironmentRecord."""

from __future__ import annotations

from accel.hardware import HardwareProfile
from accel.hardware.detect import detect_once_per_boot
from accel.settings import get_settings
from accel.storage import EnvironmentRecord, ResultsStore


def environment_record(profile: HardwareProfile) -> EnvironmentRecord:
    accelerators = [
        {
            "kind": kind,
            "index": d.index,
            "name": d.name,
            "memory_bytes": d.memory_bytes,
            "compute_capability": d.compute_capability,
        }
        for kind, accel in profile.accelerators.items()
        if accel.available and kind != "nvml"
        for d in accel.devices
    ]
    return EnvironmentRecord(
        host=profile.host.hostname,
        os=f"{profile.host.os} {profile.host.os_release}",
        python=profile.host.python,
        cpu=profile.cpu.model,
        architecture=profile.cpu.architecture,
        physical_cores=profile.cpu.physical_cores,
        logical_cores=profile.cpu.logical_cores,
        memory_bytes=profile.memory.total_bytes,
        accelerators=accelerators,
        libraries=profile.libraries,
        profile=profile.model_dump(mode="json", exclude={"detected_at"}),
    )


def record_this_environment(store: ResultsStore, profile: HardwareProfile | None = None) -> str:
    """Detect (unless given; once per boot, hardware/detect) and record this machine; its environment id."""
    profile = profile or detect_once_per_boot(get_settings().cache_dir / "hardware-profile.json")
    return store.record_environment(environment_record(profile))
