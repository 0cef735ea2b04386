"""Accelerators (CUDA, ROCm, MPS, XPU) as torch sees them, and NVIDIA GPUs as NVML sees them."""

from __future__ import annotations

from types import ModuleType

from accel.hardware.profile import Accelerator, Device


def _torch_gpu_devices(torch: ModuleType) -> list[Device]:
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            Device(
                index=index,
                name=props.name,
                memory_bytes=props.total_memory,
                compute_capability=f"{props.major}.{props.minor}",
            )
        )
    return devices


def detect_cuda(torch: ModuleType | None, torch_reason: str | None) -> Accelerator:
    if torch is None:
        return Accelerator(name="cuda", available=False, reason=torch_reason)
    if torch.version.cuda is None:
        return Accelerator(name="cuda", available=False, reason=f"torch {torch.__version__} is built without CUDA")
    if not torch.cuda.is_available():
        return Accelerator(
            name="cuda",
            available=False,
            version=torch.version.cuda,
            reason="no CUDA device visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)",
        )
    return Accelerator(name="cuda", available=True, version=torch.version.cuda, devices=_torch_gpu_devices(torch))


def detect_rocm(torch: ModuleType | None, torch_reason: str | None) -> Accelerator:
    if torch is None:
        return Accelerator(name="rocm", available=False, reason=torch_reason)
    hip = getattr(torch.version, "hip", None)
    if hip is None:
        return Accelerator(
            name="rocm", available=False, reason=f"torch {torch.__version__} is built without ROCm (HIP)"
        )
    if not torch.cuda.is_available():
        return Accelerator(name="rocm", available=False, version=hip, reason="no ROCm device visible")
    return Accelerator(name="rocm", available=True, version=hip, devices=_torch_gpu_devices(torch))


def detect_mps(torch: ModuleType | None, torch_reason: str | None) -> Accelerator:
    if torch is None:
        return Accelerator(name="mps", available=False, reason=torch_reason)
    if not torch.backends.mps.is_built():
        return Accelerator(
            name="mps", available=False, reason="torch is built without MPS (Apple silicon with macOS only)"
        )
    if not torch.backends.mps.is_available():
        return Accelerator(name="mps", available=False, reason="MPS is built in but no Metal device is usable")
    return Accelerator(name="mps", available=True, devices=[Device(index=0, name="Apple GPU (MPS)")])


def detect_xpu(torch: ModuleType | None, torch_reason: str | None) -> Accelerator:
    if torch is None:
        return Accelerator(name="xpu", available=False, reason=torch_reason)
    xpu = getattr(torch, "xpu", None)
    if xpu is None or not getattr(xpu, "_is_compiled", lambda: False)():
        return Accelerator(
            name="xpu",
            available=False,
            reason=f"torch {torch.__version__} is built without XPU (Intel GPU) support",
        )
    if not xpu.is_available():
        return Accelerator(name="xpu", available=False, reason="no Intel XPU device visible")
    devices = []
    for index in range(xpu.device_count()):
        props = xpu.get_device_properties(index)
        devices.append(Device(index=index, name=props.name, memory_bytes=getattr(props, "total_memory", None)))
    return Accelerator(name="xpu", available=True, devices=devices)


def detect_nvml() -> Accelerator:
    """NVIDIA GPUs through the driver's management library, independent of any torch build."""
    try:
        import pynvml
    except ImportError:
        return Accelerator(
            name="nvml", available=False, reason="nvidia-ml-py is not installed (pip install 'accel[cuda]')"
        )
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return Accelerator(name="nvml", available=False, reason=f"NVML unavailable: {err}")
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            devices.append(
                Device(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_bytes=pynvml.nvmlDeviceGetMemoryInfo(handle).total,
                    compute_capability=f"{major}.{minor}",
                )
            )
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
    finally:
        pynvml.nvmlShutdown()
    if not devices:
        return Accelerator(name="nvml", available=False, version=driver, reason="the NVIDIA driver sees no GPU")
    return Accelerator(name="nvml", available=True, version=driver, devices=devices)
