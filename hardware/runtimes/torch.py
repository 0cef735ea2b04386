"""torch: skills run a `torch.export` program (or a TorchScript trace) with torch alone."""

from __future__ import annotations

from types import ModuleType

from accel.hardware.profile import Accelerator, RuntimeInfo
from accel.hardware.runtimes.spec import RuntimeSpec, runtime_info

# The torch dtype of each precision's weights and activations.
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}


def detect(accelerators: dict[str, Accelerator], torch: ModuleType | None, reason: str | None) -> RuntimeInfo:
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
    return runtime_info(SPEC, torch.__version__, devices, found)


SPEC = RuntimeSpec(
    name="torch",
    aliases=("pt", "pytorch"),
    precisions={
        "cpu": ("fp32", "bf16"),
        "cuda": ("fp32", "fp16", "bf16"),
        "rocm": ("fp32", "fp16", "bf16"),
        "mps": ("fp32", "fp16"),
        "xpu": ("fp32", "fp16", "bf16"),
    },
    # ROCm builds of torch drive AMD GPUs through the cuda device API.
    devices={"cpu": "cpu", "cuda": "cuda", "rocm": "cuda", "mps": "mps", "xpu": "xpu"},
    exporters=(("torch.export", "model.pt2"), ("torchscript", "model.ts")),
    graph="torch",
    detect=detect,
    distributions=("torch",),
    template_constants=lambda precision: {"TORCH_DTYPE": TORCH_DTYPES[precision]},
)
