import os

import pytest

from accel.hardware import HardwareProfile, available_targets, detect, target_status, work_pool_name
from accel.hardware.cpu import _cpuinfo_fields
from accel.hardware.targets import Target


@pytest.fixture(scope="module")
def profile() -> HardwareProfile:
    return detect()


def test_cores_and_memory_match_the_os(profile):
    assert profile.cpu.logical_cores == os.cpu_count()
    assert 1 <= profile.cpu.usable_cores <= profile.cpu.logical_cores
    assert profile.cpu.physical_cores is None or 1 <= profile.cpu.physical_cores <= profile.cpu.logical_cores
    assert profile.memory.total_bytes > profile.memory.available_bytes > 0
    assert profile.host.python.count(".") == 2


def test_cuda_is_reported_with_devices_or_with_the_reason_it_is_absent(profile):
    import torch

    cuda = profile.accelerators["cuda"]
    assert cuda.available == torch.cuda.is_available()
    if cuda.available:
        assert cuda.devices and all(d.memory_bytes and d.compute_capability for d in cuda.devices)
    else:
        assert cuda.reason and not cuda.devices
    for name in ("rocm", "mps", "xpu", "nvml"):
        accel = profile.accelerators[name]
        assert accel.available or accel.reason, f"{name} absent without a reason"


def test_the_three_cpu_runtimes_run_here(profile):
    available = {str(t) for t in available_targets(profile)}
    assert {"cpu/torch", "cpu/onnxruntime", "cpu/openvino"} <= available
    assert profile.hardware[0] == "cpu"
    for name in ("torch", "onnxruntime", "openvino"):
        runtime = profile.runtimes[name]
        assert runtime.installed and runtime.version and runtime.precisions["cpu"][0] == "fp32"
    assert "CPUExecutionProvider" in profile.runtimes["onnxruntime"].devices
    assert "CPU" in profile.runtimes["openvino"].devices


def test_every_unavailable_target_says_why(profile):
    from accel.hardware import all_targets

    for target in all_targets():
        status = target_status(target, profile)
        assert status.available != bool(status.reason), status
        assert status.work_pool == work_pool_name(target.hardware)


def test_bf16_on_openvino_follows_what_the_cpu_computes_natively(profile):
    import openvino

    caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    status = target_status(Target.parse("cpu/openvino:bf16"), profile)
    assert status.available == ("BF16" in caps)


def test_library_versions_come_from_installed_metadata(profile):
    import duckdb
    import transformers

    assert profile.libraries["transformers"] == transformers.__version__
    assert profile.libraries["duckdb"] == duckdb.__version__
    assert profile.libraries["prefect"]


def test_cpuinfo_parsing_reads_x86_flags_and_arm_features():
    x86 = "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu sse4_2 avx2 avx512f amx_tile\n"
    assert _cpuinfo_fields(x86) == ("Some CPU @ 2GHz", {"fpu", "sse4_2", "avx2", "avx512f", "amx_tile"})
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16\nCPU part\t: 0xd0c\n"
    assert _cpuinfo_fields(arm) == (None, {"fp", "asimd", "sve", "bf16"})


def test_a_flow_process_reads_the_machine_from_the_boot_cache_without_importing_the_runtimes(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "hardware-profile.json"
    probe = (
        "import sys; from pathlib import Path; from accel.hardware.detect import detect_once_per_boot; "
        f"p = detect_once_per_boot(Path({str(cache)!r})); "
        "print(p.cpu.logical_cores, ','.join(m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules))"
    )

    def run(**env: str) -> list[str]:
        import os

        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={**os.environ, **env}
        )
        return done.stdout.split()

    first = run()
    assert cache.is_file() and len(first) == 2 and "torch" in first[1]  # detected: the runtimes imported
    again = run()
    assert again == first[:1], "the second process detected again instead of reading the boot's profile"
    assert len(run(CUDA_VISIBLE_DEVICES="")) == 2, "a change in the devices a process may see detects again"
