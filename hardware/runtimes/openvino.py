"""OpenVINO: skills compile the exported ONNX graph for an OpenVINO device."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from accel.hardware.profile import Accelerator, RuntimeInfo
from accel.hardware.runtimes.spec import RuntimeSpec, import_failure, runtime_info

# OpenVINO's name of each precision, for INFERENCE_PRECISION_HINT.
OPENVINO_PRECISIONS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def detect(
    accelerators: dict[str, Accelerator], torch: ModuleType | None = None, reason: str | None = None
) -> RuntimeInfo:
    del accelerators, torch, reason
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
    return runtime_info(SPEC, openvino.__version__.split("-")[0], devices, found)


def cpu_gemm(n: int, threads: int | None) -> Callable[[], None]:
    import numpy as np
    import openvino
    from openvino import opset13

    a, b = (opset13.parameter([n, n], np.float32) for _ in range(2))
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.Core().compile_model(
        openvino.Model([opset13.matmul(a, b, False, False)], [a, b]), "CPU", config
    )
    request = compiled.create_infer_request()
    feeds = [np.random.default_rng(0).standard_normal((n, n), dtype=np.float32) for _ in range(2)]
    return lambda: request.infer(feeds)


SPEC = RuntimeSpec(
    name="openvino",
    aliases=("ov",),
    precisions={"cpu": ("fp32", "bf16"), "xpu": ("fp32", "fp16")},
    devices={"cpu": "CPU", "xpu": "GPU"},
    exporters=(("torchscript", "model.onnx"), ("dynamo", "model.onnx")),
    # A cached decoder as OpenVINO's stateful IR (tasks/export_openvino): the CPU plugin then appends each
    # layer's cache inside its attention. Other devices keep the ONNX graph until measured there.
    cached_decoder_exporters={"cpu": (("openvino-stateful", "model.xml"),)},
    graph="onnx",
    detect=detect,
    distributions=("openvino",),
    cpu_gemm=cpu_gemm,
    # Set explicitly: on CPUs with AVX512_BF16 or AMX, OpenVINO's default is bf16.
    template_constants=lambda precision: {"OPENVINO_PRECISION": OPENVINO_PRECISIONS.get(precision, "f32")},
)
