"""Turning a skill's reference module into the artifact its runtime runs.

torch runs a `torch.export` program (`model.pt2`), or a TorchScript trace (`model.ts`) when
torch.export cannot capture the model. onnxruntime and OpenVINO run ONNX (`model.onnx`) from the
TorchScript-based exporter, or from the dynamo exporter when that one fails; each covers models the
other does not (../shared/notes/ml-stack-verified.md, sections 4 and 8). Which exporters a runtime tries,
in which order, is its spec's (hardware/runtimes). The caller validates every artifact against the
reference and moves on to the next exporter when one falls short.

`dynamo-attention` is the dynamo exporter at opset 23, with each attention one ONNX `Attention` op
(plus `RotaryEmbedding` and `RMSNormalization`) and grouped-query attention kept grouped: the keys and
values of a KV cache are not repeated per query head before it (transformers' TRANSFORMERS_SDPA_FORCE_GQA
while it traces). ONNX Runtime decodes a cached decoder's graph from it about a quarter faster than
from the TorchScript exporter's (~1000 nodes against ~7700 for SmolLM2); OpenVINO 2026.4 mistranslates
its grouped `Attention`, so only onnxruntime's spec lists it (for the CPU).

`dynamo-inplace-cache` is that graph with its KV cache updated in place (tasks/export_inplace_cache):
each past input a buffer the step's keys and values are written into (opset 24), bound by the skill as
both past input and present output instead of a new present concatenated every step.

`openvino-stateful` (tasks/export_openvino) is OpenVINO's own: its IR of a cached decoder, the cache kept
in the request's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 18
ATTENTION_OPSET = 23  # the first with the `Attention`, `RotaryEmbedding` and `RMSNormalization` ops
_SINGLE_FILE_LIMIT = 1_800_000_000  # protobuf caps one file at 2 GB: larger graphs keep weights beside


def source_digest() -> str:
    """A hash of the exporters' own code (this module, tasks/export_openvino, tasks/export_inplace_cache):
    part of each skill's identity and of the shared export's key, so an exporter edited without a generator
    version bump never has a skill or an export made by its old code reused."""
    digest = hashlib.sha256()
    for name in ("export.py", "export_openvino.py", "export_inplace_cache.py"):
        digest.update(name.encode() + b"\0" + (Path(__file__).parent / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def silenced_output():
    """Send this process's stdout and stderr, C level included, to nowhere while exporters run.

    The TorchScript exporter dumps whole graphs from C++ when it fails, and runtimes log from C++:
    noise on a CLI, and what matters comes back as the exception.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def dynamic_axes(inputs: dict[str, dict[str, Any]]) -> dict[str, dict[int, str]]:
    """Per input, the axes that vary (named dims in the spec) and their symbol."""
    return {
        name: {axis: dim for axis, dim in enumerate(spec["shape"]) if isinstance(dim, str)}
        for name, spec in inputs.items()
    }


def _tensors(example: dict[str, np.ndarray], device: str, dtype: Any) -> dict[str, Any]:
    import torch

    tensors = {}
    for name, value in example.items():
        tensor = torch.from_numpy(value).to(device)
        tensors[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return tensors


def export(
    module: Any,
    example: dict[str, np.ndarray],
    inputs: dict[str, dict[str, Any]],
    output_names: list[str],
    exporter: str,
    path: Path,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Write `module` traced on `example` to `path` with `exporter`; returns facts for the manifest."""
    import torch

    tensors = _tensors(example, device, getattr(torch, dtype))
    axes = dynamic_axes(inputs)
    shapes = {name: {axis: torch.export.Dim.AUTO for axis in dims} for name, dims in axes.items()}  # torch.export
    attention = exporter in ("dynamo-attention", "dynamo-inplace-cache")
    opset = ATTENTION_OPSET if attention else ONNX_OPSET
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings; failures still raise
        try:
            if exporter == "torch.export":
                program = torch.export.export(module, (), tensors, dynamic_shapes=shapes)
                torch.export.save(program, str(path))
                return {"exporter": exporter, "format": "torch.export"}
            if exporter == "openvino-stateful":
                from accel.tasks.export_openvino import export_stateful

                return export_stateful(module, tensors, inputs, output_names, path)
            if exporter == "torchscript" and path.suffix == ".ts":
                traced = torch.jit.trace(module, example_kwarg_inputs=tensors, strict=False)
                torch.jit.save(traced, str(path))
                return {"exporter": exporter, "format": "torchscript"}
            onnx_options = {"kwargs": tensors, "input_names": list(inputs), "output_names": output_names}
            if exporter == "torchscript":
                torch.onnx.export(
                    module, (), str(path), **onnx_options, dynamic_axes=axes, opset_version=opset, dynamo=False
                )
            elif exporter in ("dynamo", "dynamo-attention", "dynamo-inplace-cache"):
                with _grouped_attention() if attention else contextlib.nullcontext():
                    program = torch.onnx.export(
                        module,
                        (),
                        **onnx_options,
                        dynamic_shapes=shapes,
                        opset_version=opset,
                        dynamo=True,
                        verbose=False,
                    )
                program.save(str(path), external_data=_too_big_for_one_file(module))
            else:
                raise ValueError(f"unknown exporter {exporter!r}")
        finally:
            module.eval()  # exporters switch modes and restore the caller's; dropout must stay off
    _check_onnx(path)
    if exporter == "dynamo-inplace-cache":
        from accel.tasks.export_inplace_cache import make_cache_in_place

        return {"exporter": exporter, "format": "onnx", **make_cache_in_place(path)}
    return {"exporter": exporter, "format": "onnx", "opset": opset}


_GQA_FLAG = "TRANSFORMERS_SDPA_FORCE_GQA"
_GQA_LOCK = threading.Lock()


@contextlib.contextmanager
def _grouped_attention():
    """transformers' SDPA attention called with `enable_gqa` (read per call) while the exporter traces, so
    a grouped-query model's keys and values reach the graph's `Attention` op unrepeated. The result is the
    same attention; one export at a time sets it, and the caller's own value comes back after."""
    with _GQA_LOCK:
        before = os.environ.get(_GQA_FLAG)
        os.environ[_GQA_FLAG] = "1"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(_GQA_FLAG, None)
            else:
                os.environ[_GQA_FLAG] = before


def _too_big_for_one_file(module: Any) -> bool:
    return sum(p.numel() * p.element_size() for p in module.parameters()) > _SINGLE_FILE_LIMIT


def _check_onnx(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=False)


def quantize_int8(path: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of the ONNX graph at `path`, in place (weights int8, activations fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    # ONNX Runtime's quantizer takes any op named Attention for its own (com.microsoft) one: the standard
    # opset-23 op (the dynamo-attention exporter's) stays fp32, around its int8 projections.
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    standard_attention = any(n.op_type == "Attention" and n.domain in ("", "ai.onnx") for n in nodes)
    op_types = [op for op in IntegerOpsRegistry if op != "Attention"] if standard_attention else None
    source = path.with_name("model.fp32.onnx")
    path.rename(source)
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=op_types)
    finally:
        source.unlink(missing_ok=True)
    return {"quantization": "onnxruntime dynamic int8 (weights QInt8, activations quantized per call)"}
