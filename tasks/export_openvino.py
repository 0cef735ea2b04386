"""A decoder's KV cache kept inside OpenVINO: the `openvino-stateful` exporter.

OpenVINO's PyTorch frontend converts the reference's cached step (`Forward.cached`) with each attention
one `ScaledDotProductAttention` op. The past key/values inputs then become states of the request
(ReadValue / Assign pairs, OpenVINO's "stateful" form, as optimum-intel and openvino-genai run LLMs),
each read through a `Gather` on a `beam_idx` input (the order of the rows, `arange(batch)` for greedy
decoding) and started as an empty cache of the prompt's batch. On that pattern the CPU plugin fuses each
layer's cache concatenation into its attention (`ScaledDotProductAttentionWithKVCache`): the cache is
appended in place instead of copied into a new tensor at every step, and is never fed in or read out.
SmolLM2-135M decodes a token in about two thirds of the time of the explicit-cache ONNX graph.

State names: OpenVINO names each state `<past input><present output>` (for example
`past_key_values_0_keypresent_0_key`); the skill's OpenVINO backend splits them at "present" to know
which past input and present output each stands for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PAST_PREFIX = "past_key_values"
PRESENT_PREFIX = "present"


def present_name(past: str) -> str:
    """The graph output that gives back the past input `past` one step longer."""
    return PRESENT_PREFIX + past.removeprefix(PAST_PREFIX)


def export_stateful(
    module: Any,
    tensors: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    output_names: list[str],
    path: Path,
) -> dict[str, Any]:
    """`module` traced on `tensors` into an OpenVINO IR at `path` (`model.xml` + `model.bin`, fp32 weights)
    whose past key/values inputs are states. Raises ValueError for a graph this does not fit."""
    import openvino
    import torch
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    pasts = [name for name in inputs if name.startswith(PAST_PREFIX)]
    if not pasts or any(present_name(p) not in output_names for p in pasts):
        raise ValueError("openvino-stateful needs past key/values inputs, each with its present output")
    if "input_ids" not in inputs or any(PRESENT_PREFIX in p for p in pasts):
        raise ValueError("openvino-stateful needs input_ids, and past input names without 'present' in them")
    with torch.no_grad():
        model = openvino.convert_model(module, example_input=tensors)
    _name_ports(model, inputs, output_names)
    _additive_attention_masks(model)
    _logits_positions(model)
    parameters = {p.get_output_tensor(0).get_any_name(): p for p in model.get_parameters()}
    for name in pasts:  # the cache's fixed axes (kv heads, head dim) as the spec gives them
        shape = [-1 if isinstance(dim, str) else int(dim) for dim in inputs[name]["shape"]]
        parameters[name].set_partial_shape(openvino.PartialShape(shape))
    model.validate_nodes_and_infer_types()

    # Rows of the cache reordered by beam_idx: the pattern the CPU plugin fuses into its attention.
    beam_idx = ops.parameter([-1], openvino.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    for name in pasts:
        consumers = list(parameters[name].output(0).get_target_inputs())
        reordered = ops.gather(parameters[name], beam_idx, ops.constant(np.int64(0)))
        for consumer in consumers:
            consumer.replace_source_output(reordered.output(0))
    model.add_parameters([beam_idx])
    apply_make_stateful_transformation(model, {name: present_name(name) for name in pasts})

    # Each state starts as an empty cache (no positions) of the prompt's batch: (batch, kv heads, 0, head dim).
    batch = ops.gather(
        ops.shape_of(parameters["input_ids"], "i64"), ops.constant(np.array([0], np.int64)), ops.constant(np.int64(0))
    )
    rest = [0 if isinstance(dim, str) else int(dim) for dim in inputs[pasts[0]]["shape"][1:]]
    empty = ops.broadcast(ops.constant(np.float32(0)), ops.concat([batch, ops.constant(np.array(rest, np.int64))], 0))
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            op.set_arguments([empty])
    model.validate_nodes_and_infer_types()
    openvino.save_model(model, str(path), compress_to_fp16=False)
    return {"exporter": "openvino-stateful", "format": "openvino-ir", "kv_cache": "stateful", "states": len(pasts)}


def _additive_attention_masks(model: Any) -> None:
    """Each attention's boolean mask (True: attend) given as the additive float mask it stands for (0 or
    -inf). The same attention, but the CPU plugin's cached attention reads a float mask about three times
    faster than a boolean one (SmolLM2: 3.9 against 12.1 ms of a 25 ms decode step)."""
    import openvino
    from openvino import opset13 as ops

    additive = {}
    for op in model.get_ops():
        if op.get_type_name() != "ScaledDotProductAttention" or op.get_input_size() < 4:
            continue
        mask = op.input(3).get_source_output()
        if mask.get_element_type() != openvino.Type.boolean:
            continue
        key = (mask.get_node().get_friendly_name(), mask.get_index())
        if key not in additive:
            dtype = op.input(0).get_element_type().to_dtype()
            additive[key] = ops.select(mask, ops.constant(np.array(0, dtype)), ops.constant(np.array(-np.inf, dtype)))
        op.input(3).replace_source_output(additive[key].output(0))
    model.validate_nodes_and_infer_types()


LOGITS_POSITIONS = "logits_positions"


def _logits_positions(model: Any) -> None:
    """An input `logits_positions` (int64 positions of the new tokens) choosing whose logits the graph
    computes: the LM head runs on those positions only. The skill's backend gives every position unless
    told otherwise; a prefill asks for the last one alone (the head is about a fifth of a 135M model's
    prefill, and the logits of a 256-token prompt 50 MB a row). Left out where the head is not a MatMul
    right under the `logits` output."""
    import openvino
    from openvino import opset13 as ops

    result = next((r for r in model.get_results() if "logits" in r.output(0).get_names()), None)
    head = result.input(0).get_source_output().get_node() if result is not None else None
    if head is None or head.get_type_name() != "MatMul" or head.input(1).get_partial_shape().rank.get_length() != 2:
        return
    positions = ops.parameter([-1], openvino.Type.i64, name=LOGITS_POSITIONS)
    positions.output(0).get_tensor().set_names({LOGITS_POSITIONS})
    hidden = head.input(0).get_source_output()
    head.input(0).replace_source_output(ops.gather(hidden, positions, ops.constant(np.int64(1))).output(0))
    model.add_parameters([positions])
    model.validate_nodes_and_infer_types()


def _name_ports(model: Any, inputs: dict[str, dict[str, Any]], output_names: list[str]) -> None:
    """Every port of the converted model carries exactly the skill's name for it (the frontend adds others)."""
    for ports, expected in ((model.inputs, list(inputs)), (model.outputs, output_names)):
        found = [next((n for n in port.get_names() if n in expected), None) for port in ports]
        if sorted(n for n in found if n) != sorted(expected):
            raise ValueError(f"the converted graph's ports {found} are not the skill's {expected}")
        for port, name in zip(ports, found, strict=True):
            port.get_tensor().set_names({name})
