"""The in-place KV cache rewrite (tasks/export_inplace_cache) on small hand-made graphs: what it refuses.

What it makes of real exports (tiny Llama's and GPT-2's, decoding token for token like transformers) is
tests/tasks/test_kv_cache.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from accel.tasks.export_inplace_cache import NotRewritable, fuse_grouped_query_attention, rewrite


def _decoder(read_past_as: str = "Concat", mask: bool = True):
    """One layer's cache path as the dynamo exporter writes it: present = concat(past, new) on the position
    axis, an attention over the present with a boolean mask (or, `read_past_as` another op, the past read
    some other way)."""

    def value(name, elem=TensorProto.FLOAT, rank=4):
        return helper.make_tensor_value_info(name, elem, [f"{name}_{i}" for i in range(rank)])

    inputs = [
        value("input_ids", TensorProto.INT64, 2),
        value("attention_mask", TensorProto.INT64, 2),
        value("past_key_values_0_key"),
        value("past_key_values_0_value"),
        value("query"),
        value("new_key"),
        value("new_value"),
        value("mask", TensorProto.BOOL),
    ]
    nodes = []
    for role in ("key", "value"):
        past = f"past_key_values_0_{role}"
        if read_past_as == "Concat":
            nodes.append(helper.make_node("Concat", [past, f"new_{role}"], [f"present_0_{role}"], axis=2))
        else:
            nodes.append(helper.make_node(read_past_as, [past], [f"present_0_{role}"]))
    nodes.append(
        helper.make_node(
            "Attention", ["query", "present_0_key", "present_0_value", *(["mask"] if mask else [])], ["attended"]
        )
    )
    graph = helper.make_graph(
        nodes,
        "decoder",
        inputs,
        [value("attended"), value("present_0_key"), value("present_0_value")],
        [numpy_helper.from_array(np.zeros(1, np.float32), "unused")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def test_the_cache_is_written_into_the_past_buffer_and_the_attention_reads_the_mask_padded_over_the_room():
    model = _decoder()
    assert rewrite(model) == {
        "past_key_values_0_key": "present_0_key",
        "past_key_values_0_value": "present_0_value",
    }
    ops = [node.op_type for node in model.graph.node]
    assert "Concat" in ops  # the mask's padding amounts; no concat reads the cache
    writes = [node for node in model.graph.node if node.op_type == "TensorScatter"]
    assert [(w.input[0], w.output[0]) for w in writes] == [
        ("past_key_values_0_key", "present_0_key"),
        ("past_key_values_0_value", "present_0_value"),
    ]
    attention = next(node for node in model.graph.node if node.op_type == "Attention")
    pad = next(node for node in model.graph.node if node.output[0] == attention.input[3])
    assert pad.op_type == "Pad" and pad.input[0] == "mask"
    assert {p.key for p in model.metadata_props} == {"accel.kv_cache_in_place"}
    assert next(o.version for o in model.opset_import if o.domain == "") == 24
    # No reshapes and transposes around this attention: it stays as it is, not fused.
    assert fuse_grouped_query_attention(model) == 0
    assert "GroupQueryAttention" not in [node.op_type for node in model.graph.node]


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (_decoder(read_past_as="Identity"), "Identity node '' reads past_key_values_0_key"),
        (_decoder(mask=False), "has no mask: it would attend to the room"),
    ],
    ids=["past-read-otherwise", "attention-without-mask"],
)
def test_a_graph_that_reads_its_cache_otherwise_is_refused_with_the_reason(model, why):
    with pytest.raises(NotRewritable, match=why):
        rewrite(model)
