"""What this machine has, as typed data: the result of `detect()`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class HostInfo(BaseModel):
    hostname: str
    os: str = Field(description="platform.system(): Linux, Darwin, Windows")
    os_release: str
    python: str
    python_implementation: str


class CpuInfo(BaseModel):
    model: str | None = Field(description="Marketing name; None when the OS does not say.")
    architecture: str = Field(description="platform.machine(): x86_64, aarch64, arm64")
    physical_cores: int | None
    logical_cores: int = Field(description="os.cpu_count()")
    usable_cores: int = Field(description="Cores this process may run on (affinity / container limits).")
    max_frequency_mhz: float | None = None
    flags: list[str] = Field(
        default_factory=list, description="Vector and matrix extensions the CPU reports, lowercase."
    )
    avx2: bool = False
    avx512: bool = False
    amx: bool = False
    torch_capability: str | None = Field(
        None, description="The kernel level torch dispatches to (torch.backends.cpu.get_cpu_capability())."
    )


class MemoryInfo(BaseModel):
    total_bytes: int
    available_bytes: int
    cgroup_limit_bytes: int | None = Field(None, description="Container memory limit, when one is set.")


class Device(BaseModel):
    index: int
    name: str
    memory_bytes: int | None = None
    compute_capability: str | None = None


class Accelerator(BaseModel):
    """One kind of accelerator (cuda, rocm, mps, xpu) or one probe of it (nvml)."""

    name: str
    available: bool
    reason: str | None = Field(None, description="Why it is absent: not installed, no device, ...")
    version: str | None = Field(None, description="Toolkit or driver version, when known.")
    devices: list[Device] = Field(default_factory=list)


class RuntimeInfo(BaseModel):
    """An inference runtime (torch, onnxruntime, openvino) and what it can drive here."""

    name: str
    installed: bool
    version: str | None = None
    reason: str | None = Field(None, description="Why it is unusable, when it is.")
    devices: list[str] = Field(
        default_factory=list,
        description="What the runtime itself reports: torch device types, ORT execution providers, OpenVINO devices.",
    )
    hardware: list[str] = Field(
        default_factory=list, description="The accel hardware kinds this runtime can run on here."
    )
    precisions: dict[str, list[str]] = Field(
        default_factory=dict, description="Per hardware kind, the precisions the runtime can run here."
    )
    unavailable: dict[str, str] = Field(
        default_factory=dict,
        description="Per hardware kind accel supports for this runtime but this machine cannot run, the reason.",
    )


class HardwareProfile(BaseModel):
    host: HostInfo
    cpu: CpuInfo
    memory: MemoryInfo
    accelerators: dict[str, Accelerator] = Field(description="cuda, rocm, mps, xpu, and the nvml probe.")
    runtimes: dict[str, RuntimeInfo] = Field(description="torch, onnxruntime, openvino.")
    libraries: dict[str, str | None] = Field(description="Installed versions; None when not installed.")
    detected_at: datetime

    @property
    def hardware(self) -> list[str]:
        """Hardware kinds at least one runtime can run on here, cpu first."""
        kinds = {hw for runtime in self.runtimes.values() for hw in runtime.hardware}
        return [hw for hw in ("cpu", "cuda", "rocm", "mps", "xpu") if hw in kinds]
