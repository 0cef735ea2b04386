"""CPU, memory and host facts, read from the OS (no runtime imported)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from accel.hardware.profile import CpuInfo, HostInfo, MemoryInfo

# Extensions that decide which kernels ML runtimes pick (x86 and Arm names as /proc/cpuinfo spells them).
_INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",
    "asimdhp",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)


def detect_host() -> HostInfo:
    return HostInfo(
        hostname=socket.gethostname(),
        os=platform.system(),
        os_release=platform.release(),
        python=platform.python_version(),
        python_implementation=platform.python_implementation(),
    )


def _cpuinfo_fields(text: str) -> tuple[str | None, set[str]]:
    """The model name and the flags from /proc/cpuinfo text (x86 `flags`, Arm `Features`)."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity API
        return os.cpu_count() or 1


def detect_cpu(torch_capability: str | None = None) -> CpuInfo:
    model, flags = None, set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model, flags = _cpuinfo_fields(cpuinfo.read_text(errors="replace"))
    elif sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string")
        flags = {f.lower().replace(".", "_") for f in (_sysctl("machdep.cpu.features") or "").split()}
    model = model or platform.processor() or None
    found = sorted(f for f in flags if f in _INTERESTING_FLAGS)
    freq = psutil.cpu_freq()
    return CpuInfo(
        model=model,
        architecture=platform.machine(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=os.cpu_count() or 1,
        usable_cores=_usable_cores(),
        max_frequency_mhz=(freq.max or freq.current or None) if freq else None,
        flags=found,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        amx="amx_tile" in flags,
        torch_capability=torch_capability,
    )


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        # "max" (v2) or a huge sentinel (v1) both mean no limit.
        if raw.isdigit() and int(raw) < psutil.virtual_memory().total:
            return int(raw)
    return None


def detect_memory() -> MemoryInfo:
    vm = psutil.virtual_memory()
    return MemoryInfo(total_bytes=vm.total, available_bytes=vm.available, cgroup_limit_bytes=_cgroup_memory_limit())


# FLOPs per core per clock for one fused multiply-add instruction per pipe: vector lanes x 2 (multiply
# and add). x86 server cores since Skylake-SP / Zen 5 issue 2 FMAs per cycle; /proc/cpuinfo cannot say
# how many FMA pipes a core has, so 2 is assumed, and stated in the basis: this is an upper bound.
_FMA_PIPES = 2
_FP32_LANES = (("avx512f", 16, "AVX-512"), ("avx2", 8, "AVX2"), ("avx", 8, "AVX"), ("asimd", 4, "NEON"))


def _max_clock_mhz() -> tuple[float, str] | None:
    """The highest clock the OS reports: cpufreq's maximum, else lscpu's, else /proc/cpuinfo's current."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1000, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
        for line in out.splitlines():
            if line.startswith("CPU max MHz:") and float(line.split(":")[1]) > 0:
                return float(line.split(":")[1]), "lscpu CPU max MHz"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]), "/proc/cpuinfo cpu MHz (the current clock: no maximum is exposed)"
    except (OSError, ValueError):
        pass
    return None


def theoretical_peak_flops(dtype: str = "float32", cores: int | None = None) -> tuple[float, str] | None:
    """cores x clock x FLOP/cycle from the CPU's widest FMA vector unit, and how it was worked out.

    float32 only (other precisions' instruction throughput differs per microarchitecture); None where
    the clock or the vector unit cannot be read.
    """
    if dtype != "float32":
        return None
    clock = _max_clock_mhz()
    try:
        _, flags = _cpuinfo_fields(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return None
    unit = next(((lanes, name) for flag, lanes, name in _FP32_LANES if flag in flags), None)
    if clock is None or unit is None or (unit[1] != "NEON" and "fma" not in flags):
        return None
    cores = cores or _usable_cores()
    per_cycle = unit[0] * 2 * _FMA_PIPES
    basis = (
        f"{cores} cores x {clock[0]:.0f} MHz ({clock[1]}) x {per_cycle} FP32 FLOP/cycle "
        f"({unit[1]}: {unit[0]} lanes x 2 for FMA x {_FMA_PIPES} FMA pipes, assumed)"
    )
    return cores * clock[0] * 1e6 * per_cycle, basis
