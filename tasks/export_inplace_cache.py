"""A cached decoder's ONNX graph whose KV cache is updated in place: exporter `dynamo-inplace-cache`.

The `dynamo-attention` graph concatenates each layer's past keys and values with the step's new ones
into a new present tensor every step: at batch 4 and 256 positions SmolLM2's 30 layers copy 47 MB per
token. This rewrite of that graph makes each past input a buffer with room for more positions than it
holds (its capacity): the step's keys and values are written into it at the first free position with
ONNX's `TensorScatter` (opset 24), and the present output is that buffer. A caller that binds one
ONNX Runtime value as both the past input and the present output (IOBinding) has the cache updated where
it is, as onnxruntime-genai's shared past/present buffer is; ONNX Runtime then writes only the new
positions. Each attention reads the whole buffer, its mask padded with "attend to none" over the room.

The graph keeps its inputs and outputs and their meaning, but for the past inputs' position axis: the
attention mask's length says how many positions the cache holds after the step (past + new, as before),
and each past input (and present output) is a buffer of `capacity` >= that many positions, the rest room.
The model's metadata `accel.kv_cache_in_place` maps each past input to its present output (JSON).

The rewrite refuses (NotRewritable) any graph that reads a past input other than through its concat or
the shape of an axis that is not the positions', and any attention over the cache without a mask: the
exporter then fails, and generation moves on to the next exporter.
"""

from __future__ import annotations

import json
from pathlib import Path

from accel.tasks.export_openvino import LOGITS_POSITIONS

METADATA_KEY = "accel.kv_cache_in_place"
OPSET = 24  # the first with TensorScatter
_IR_VERSION = 11  # the IR version of opset 24
_PREFIX = "accel_inplace_"
_POSITIONS = 2  # (batch, kv heads, positions, head dim)


def _name(what: str) -> str:
    """A name of this rewrite's own (values, initializers, nodes), apart from the exporter's."""
    return _PREFIX + what


class NotRewritable(ValueError):
    """The graph reads its cache in a way the in-place form cannot keep."""


def make_cache_in_place(path: Path) -> dict[str, object]:
    """Rewrite the `dynamo-attention` graph at `path` (weights beside it stay where they are); the facts
    for the manifest."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    rewrite(model)
    fused = fuse_grouped_query_attention(model)
    positions = take_logits_positions(model)
    _drop_unread_initializers(model.graph)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=False)
    return {
        "opset": OPSET,
        "kv_cache": "in place: a buffer bound as both the past input and the present output",
        "attention": f"GroupQueryAttention (com.microsoft) in {fused} layers" if fused else "Attention + TensorScatter",
        "logits": "of the positions asked (input logits_positions)" if positions else "of every position",
    }


def rewrite(model) -> dict[str, str]:
    """Make `model`'s cache update in place (see the module's docstring); past input -> present output."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inputs = [value.name for value in graph.input]
    past = [name for name in inputs if name.startswith("past_key_values")]
    outputs = {value.name for value in graph.output}
    if not past or not {"input_ids", "attention_mask"} <= set(inputs):
        raise NotRewritable("the graph takes no past key/values, or no input_ids and attention_mask")
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    constants = {
        "zero": np.array([0], np.int64),
        "last_axis": np.array([-1], np.int64),
        "attend_none_bool": np.array(False),
        "attend_none_float": np.array(-np.inf, np.float32),
        "attend_none_half": np.array(-np.inf, np.float16),
    }
    graph.initializer.extend(numpy_helper.from_array(value, _name(key)) for key, value in constants.items())
    attend_none = {
        TensorProto.BOOL: _name("attend_none_bool"),
        TensorProto.FLOAT: _name("attend_none_float"),
        TensorProto.FLOAT16: _name("attend_none_half"),
    }
    # The positions held before the step (mask length - new tokens): where each row's new ones are written.
    head = [
        helper.make_node("Shape", ["attention_mask"], [_name("total")], start=1, end=2),
        helper.make_node("Shape", ["input_ids"], [_name("new")], start=1, end=2),
        helper.make_node("Shape", ["input_ids"], [_name("batch")], start=0, end=1),
        helper.make_node("Sub", [_name("total"), _name("new")], [_name("held")]),
        helper.make_node("Expand", [_name("held"), _name("batch")], [_name("write_at")]),
        helper.make_node("Shape", [past[0]], [_name("capacity")], start=_POSITIONS, end=_POSITIONS + 1),
        helper.make_node("Sub", [_name("capacity"), _name("total")], [_name("room")]),
        helper.make_node("Concat", [_name("zero"), _name("room")], [_name("mask_pads")], axis=0),
    ]
    present_of: dict[str, str] = {}  # past input -> present output
    padded: dict[str, str] = {}  # attention mask -> the mask padded over the room
    nodes = []
    for node in graph.node:
        reads = [value for value in node.input if value in past]
        if node.op_type == "Attention" and (set(node.input[1:3]) & set(present_of.values())):
            nodes.append(_padded_attention(node, padded, types, attend_none, helper, into=nodes))
            continue
        if not reads:
            nodes.append(node)
            continue
        if node.op_type == "Shape":
            span = _shape_span(node, helper)
            if span == (_POSITIONS, _POSITIONS + 1):  # the positions held: no longer the buffer's length
                nodes.append(helper.make_node("Identity", [_name("held")], list(node.output), name=node.name))
                continue
            if span[1] <= _POSITIONS or span[0] > _POSITIONS:  # batch, heads or head dim: unchanged
                nodes.append(node)
                continue
        elif (
            node.op_type == "Concat"
            and len(node.input) == 2
            and node.input[0] in past
            and node.input[1] not in past
            and _attribute(node, "axis", helper) in (_POSITIONS, _POSITIONS - 4)
            and node.output[0] in outputs
            and node.input[0] not in present_of
        ):
            present_of[node.input[0]] = node.output[0]
            nodes.append(
                helper.make_node(
                    "TensorScatter",
                    [node.input[0], node.input[1], _name("write_at")],
                    [node.output[0]],
                    axis=_POSITIONS,
                    name=node.name + "_in_place",
                )
            )
            continue
        raise NotRewritable(
            f"{node.op_type} node {node.name!r} reads {reads[0]} in a way the in-place cache cannot keep"
        )
    if missing := sorted(set(past) - set(present_of)):
        raise NotRewritable(f"no concat of {missing[0]} into a present output")
    presents = set(present_of.values())
    for node in nodes:
        if node.op_type != "Attention" and presents & set(node.input):
            raise NotRewritable(f"{node.op_type} node {node.name!r} reads the present cache besides the attention")
    del graph.node[:]
    graph.node.extend(head + nodes)
    for value in (*graph.input, *graph.output):
        if value.name in past or value.name in presents:
            value.type.tensor_type.shape.dim[_POSITIONS].dim_param = "capacity"
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, OPSET)
    model.ir_version = max(model.ir_version, _IR_VERSION)
    helper.set_model_props(
        model, {**{p.key: p.value for p in model.metadata_props}, METADATA_KEY: json.dumps(present_of)}
    )
    return present_of


def _padded_attention(node, padded: dict[str, str], types: dict[str, int], attend_none, helper, into: list):
    """`node` (an attention over the cache) with its mask padded over the buffer's room (the padding node
    appended to `into` the first time a mask is seen)."""
    if len(node.input) < 4 or not node.input[3]:
        raise NotRewritable(f"attention {node.name!r} over the cache has no mask: it would attend to the room")
    if len(node.input) > 4 and any(node.input[4:6]):
        raise NotRewritable(f"attention {node.name!r} concatenates a past cache itself")
    mask = node.input[3]
    if mask not in padded:
        if types.get(mask) not in attend_none:
            raise NotRewritable(f"attention {node.name!r}'s mask {mask} is of an unknown element type")
        padded[mask] = _name(f"padded_{len(padded)}")
        into.append(
            helper.make_node(
                "Pad",
                [mask, _name("mask_pads"), attend_none[types[mask]], _name("last_axis")],
                [padded[mask]],
                mode="constant",
            )
        )
    node.input[3] = padded[mask]
    return node


def _attributes(node, helper) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _attribute(node, key: str, helper):
    return _attributes(node, helper).get(key)


def _shape_span(node, helper) -> tuple[float, float]:
    """The axes [start, end) a Shape node reads of a past input (rank 4)."""
    start, end = _attribute(node, "start", helper), _attribute(node, "end", helper)
    start = 0 if start is None else start % 4 if start < 0 else start
    end = float("inf") if end is None else end % 4 if end < 0 else end
    return start, end


def fuse_grouped_query_attention(model) -> int:
    """Each layer's attention over the in-place cache (after `rewrite`), with its cache writes and the
    reshapes and transposes around it, as one ONNX Runtime `GroupQueryAttention` (com.microsoft): the op
    onnxruntime-genai's graphs use, which writes the step's keys and values into the buffer itself and
    reads the heads from 3-D inputs, so a layer runs nine fewer nodes. Its mask is the attention's
    (causal and padding) as an additive bias; rotary embeddings stay ONNX `RotaryEmbedding`s, on 3-D inputs.

    Returns the layers fused; 0, with the graph unchanged, when any attention is not of the form expected
    (then the `TensorScatter` form stays). GroupQueryAttention continues a cache by one token per row, or
    by several for one row only: decoding, as the skills do it.
    """
    from collections import defaultdict

    from onnx import TensorProto, helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for value in node.input:
            consumers[value].append(node)
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in graph.value_info
    }
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input)}
    plans = []
    for node in graph.node:
        if node.op_type == "Attention":
            plan = _layer_plan(node, producer, consumers, shapes, helper)
            if plan is None or types.get(plan["mask"]) not in (TensorProto.BOOL, TensorProto.FLOAT):
                return 0
            plans.append(plan)
    if not plans:
        return 0
    graph.initializer.extend(
        [
            helper.make_tensor(_name("one"), TensorProto.INT64, [1], [1]),
            helper.make_tensor(_name("bias_attend"), TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor(_name("bias_none"), TensorProto.FLOAT, [], [float("-inf")]),
        ]
    )
    # GroupQueryAttention's lengths: every row holds `total` positions (left padding included), int32.
    shared = [
        helper.make_node("Sub", [_name("total"), _name("one")], [_name("last_held")]),
        helper.make_node("Cast", [_name("last_held")], [_name("last_held_int32")], to=TensorProto.INT32),
        helper.make_node("Expand", [_name("last_held_int32"), _name("batch")], [_name("seqlens_k")]),
        helper.make_node("Cast", [_name("total")], [_name("total_int32")], to=TensorProto.INT32),
    ]
    biases: dict[str, str] = {}
    fused: dict[int, list] = {}  # id(attention) -> the nodes that replace it
    replaced = set()  # ids of the cache writes, whose outputs the fused op now makes
    for number, plan in enumerate(plans):
        nodes = []
        mask = plan["mask"]
        if mask not in biases:
            if types[mask] == TensorProto.BOOL:
                biases[mask] = _name(f"bias_{len(biases)}")
                attend_or_not = [mask, _name("bias_attend"), _name("bias_none")]
                nodes.append(helper.make_node("Where", attend_or_not, [biases[mask]]))
            else:
                biases[mask] = mask
        query, key = plan["query"], plan["key"]
        for role, side in (("query", query), ("key", key)):
            if side["rotary"] is not None:
                rotary = side["rotary"]
                rotated = _name(f"{role}_rotated_{number}")
                attributes = _attributes(rotary, helper)
                attributes["num_heads"] = side["heads"]
                nodes.append(
                    helper.make_node("RotaryEmbedding", [side["flat"], *rotary.input[1:]], [rotated], **attributes)
                )
                side["flat"] = rotated
        attributes = {"num_heads": query["heads"], "kv_num_heads": key["heads"], "do_rotary": 0}
        if plan["scale"] is not None:
            attributes["scale"] = plan["scale"]
        nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [
                    query["flat"],
                    key["flat"],
                    plan["value"]["flat"],
                    plan["past"][0],
                    plan["past"][1],
                    _name("seqlens_k"),
                    _name("total_int32"),
                    "",
                    "",
                    "",
                    biases[mask],
                ],
                [_name(f"attended_{number}"), *plan["present"]],
                domain="com.microsoft",
                name=f"{_PREFIX}group_query_attention_{number}",
                **attributes,
            )
        )
        fused[id(plan["attention"])] = nodes
        # The reshape after the attention's transpose now reshapes its output, in the same element order.
        plan["output"].input[0] = _name(f"attended_{number}")
        replaced.update(id(node) for node in plan["writes"])
    nodes = []
    for node in graph.node:
        if id(node) in replaced:
            continue
        if id(node) in fused:
            if shared:
                nodes.extend(shared)
                shared = []
            nodes.extend(fused[id(node)])
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(_live(nodes, {value.name for value in graph.output}))
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(plans)


def _layer_plan(attention, producer, consumers, shapes, helper) -> dict | None:
    """What replaces one attention over the in-place cache, or None when it is not of the form expected."""
    attributes = _attributes(attention, helper)
    if any(attributes.get(key) for key in ("is_causal", "softcap", "qk_matmul_output_mode", "q_num_heads")):
        return None
    if len(attention.input) != 4:
        return None
    query, key_cache, value_cache, mask = attention.input
    pad = producer.get(mask)
    writes = [producer.get(key_cache), producer.get(value_cache)]
    if pad is None or pad.op_type != "Pad" or not mask.startswith(_PREFIX):
        return None
    if any(write is None or write.op_type != "TensorScatter" for write in writes):
        return None
    sides = {
        "query": _heads_side(query, producer, shapes, helper, rotary=True),
        "key": _heads_side(writes[0].input[1], producer, shapes, helper, rotary=True),
        "value": _heads_side(writes[1].input[1], producer, shapes, helper, rotary=False),
    }
    if None in sides.values() or sides["query"]["heads"] % sides["key"]["heads"]:
        return None
    after = consumers.get(attention.output[0], [])
    if len(after) != 1 or after[0].op_type != "Transpose" or _attribute(after[0], "perm", helper) != [0, 2, 1, 3]:
        return None
    flatten = consumers.get(after[0].output[0], [])
    if len(flatten) != 1 or flatten[0].op_type != "Reshape":
        return None
    return {
        "attention": attention,
        **sides,
        "mask": pad.input[0],
        "past": [write.input[0] for write in writes],
        "present": [write.output[0] for write in writes],
        "writes": writes,
        "output": flatten[0],
        "scale": attributes.get("scale"),
    }


def _heads_side(value: str, producer, shapes, helper, rotary: bool) -> dict | None:
    """`value` (batch, heads, positions, head dim) traced back through an optional RotaryEmbedding, a
    Transpose and a Reshape to the (batch, positions, heads * head dim) tensor it was made from."""
    node = producer.get(value)
    found = None
    if rotary and node is not None and node.op_type == "RotaryEmbedding":
        found, node = node, producer.get(node.input[0])
    if node is None or node.op_type != "Transpose" or _attribute(node, "perm", helper) != [0, 2, 1, 3]:
        return None
    reshape = producer.get(node.input[0])
    heads = shapes.get(node.output[0], [None, None])[1]
    if reshape is None or reshape.op_type != "Reshape" or len(shapes.get(reshape.input[0], ())) != 3 or not heads:
        return None
    return {"flat": reshape.input[0], "rotary": found, "heads": heads}


def _live(nodes: list, outputs: set[str]) -> list:
    """`nodes` without those whose outputs nothing reads (in order)."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(out in needed for out in node.output if out):
            kept.append(node)
            needed.update(value for value in node.input if value)
    return kept[::-1]


def _drop_unread_initializers(graph) -> None:
    """The initializers no node reads any more (the cache's padding constants once fused, a weight's
    transposed copy's source...), which ONNX Runtime would warn of at every session start."""
    from onnx import AttributeProto

    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for node in graph.node for a in node.attribute):
        return  # a subgraph may read the outer graph's initializers: leave them all
    read = {value for node in graph.node for value in node.input} | {value.name for value in graph.output}
    kept = [init for init in graph.initializer if init.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def take_logits_positions(model) -> bool:
    """An input `logits_positions` (int64 positions of the step's tokens) choosing whose logits the graph
    computes: the LM head runs on those positions only (a Gather before it), as OpenVINO's stateful IR does
    (tasks/export_openvino). The skill's backend gives every position unless told otherwise; a prefill asks
    for the last one (the head is about a fifth of a 135M model's prefill, its logits 50 MB a row for a
    256-token prompt). False, the graph unchanged, where the head is not a MatMul of the hidden states
    (batch, positions, hidden) by a 2-D weight right under the `logits` output."""
    from onnx import TensorProto, helper

    graph = model.graph
    head = next((node for node in graph.node if list(node.output) == ["logits"]), None)
    output = next((value for value in graph.output if value.name == "logits"), None)
    shapes = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.value_info}
    shapes.update({i.name: len(i.dims) for i in graph.initializer})
    if head is None or output is None or head.op_type != "MatMul" or len(output.type.tensor_type.shape.dim) != 3:
        return False
    if shapes.get(head.input[0]) != 3 or shapes.get(head.input[1]) != 2:
        return False
    selected = _PREFIX + "selected_hidden"
    graph.node.insert(
        list(graph.node).index(head),
        helper.make_node("Gather", [head.input[0], LOGITS_POSITIONS], [selected], axis=1),
    )
    head.input[0] = selected
    graph.input.append(helper.make_tensor_value_info(LOGITS_POSITIONS, TensorProto.INT64, [LOGITS_POSITIONS]))
    output.type.tensor_type.shape.dim[1].dim_param = LOGITS_POSITIONS
    return True
