"""ONNX Runtime: skills run the exported ONNX graph in an InferenceSession on one execution provider."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from accel.hardware.profile import Accelerator, RuntimeInfo
from accel.hardware.runtimes.spec import RuntimeSpec, gpu_present, import_failure, runtime_info


def detect(
    accelerators: dict[str, Accelerator], torch: ModuleType | None = None, reason: str | None = None
) -> RuntimeInfo:
    del torch, reason
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
        found["cuda"] = gpu_present(accelerators, "cuda", "nvml") or ["fp32", "fp16"]
    if not {"ROCMExecutionProvider", "MIGraphXExecutionProvider"} & set(providers):
        found["rocm"] = "onnxruntime has no ROCm or MIGraphX execution provider (install onnxruntime-rocm)"
    else:
        found["rocm"] = gpu_present(accelerators, "rocm") or ["fp32", "fp16"]
    return runtime_info(SPEC, onnxruntime.__version__, providers, found)


def cpu_gemm(n: int, threads: int | None) -> Callable[[], None]:
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper

    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b", "c")]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {name: np.random.default_rng(0).standard_normal((n, n), dtype=np.float32) for name in ("a", "b")}
    return lambda: session.run(None, feeds)


SPEC = RuntimeSpec(
    name="onnxruntime",
    aliases=("ort", "onnx"),
    precisions={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16"), "rocm": ("fp32", "fp16")},
    devices={"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "rocm": "ROCMExecutionProvider"},
    # The TorchScript-based exporter first, the dynamo one when it fails: each covers models the other
    # does not (../shared/notes/ml-stack-verified.md, sections 4 and 8).
    exporters=(("torchscript", "model.onnx"), ("dynamo", "model.onnx")),
    # A cached decoder's graph with each attention one `Attention` op, grouped-query kept grouped
    # (tasks/export): on the CPU its decode step ran about a quarter faster than the TorchScript
    # exporter's; first with its KV cache updated in place (tasks/export_inplace_cache), which saves
    # copying the whole cache each step. Not on GPUs until measured there: an execution provider without
    # an opset-23 `Attention` or opset-24 `TensorScatter` kernel would run it on the CPU, node by node,
    # and still pass validation.
    cached_decoder_exporters={"cpu": (("dynamo-inplace-cache", "model.onnx"), ("dynamo-attention", "model.onnx"))},
    graph="onnx",
    detect=detect,
    # The GPU builds install under other distribution names.
    distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-rocm"),
    cpu_gemm=cpu_gemm,
    quantized="int8",
)
