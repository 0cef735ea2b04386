"""Generated skills decode with a KV cache: the exported graph takes the past key/values and returns the
present ones, prefill and decode are separate calls, and greedy tokens stay those of transformers' `generate`.

The truth is transformers' own `generate` on the original model, called here (batched, left padded for a
causal decoder). How long a decode step takes as the output grows is a benchmark's figure, never asserted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from accel.tasks.checks import Context, run_check
from accel.tasks.manifest import load_manifest
from accel.tasks.reference import pristine_module
from accel.tasks.skill_module import import_skill

RUNTIMES = ["cpu/torch", "cpu/onnxruntime", "cpu/openvino"]
CACHED = ["llama", "gpt2", "t5"]
CASES = [(name, target) for name in CACHED for target in RUNTIMES]
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def skills(tiny_skill):
    """Every case generated once (two at a time, each in a process of its own)."""
    tiny_skill.all(CASES)
    return tiny_skill


def _module(path: Path):
    return import_skill(path / "skill.py", f"_kv_{path.name}")


def _padded(module, batch: int = 3, seq: int = 9) -> dict[str, np.ndarray]:
    """`batch` prompts of `seq` tokens, row i shorter by 2 i: padded on the left for a causal decoder (as its
    preprocess pads them), on the right for an encoder-decoder's encoder."""
    feeds = module.make_inputs(batch, seq, seed=7)
    left = module.FAMILY == "text-generation"
    for row in range(1, batch):
        where = slice(0, 2 * row) if left else slice(seq - 2 * row, seq)
        feeds["attention_mask"][row, where] = 0
        feeds["input_ids"][row, where] = module.GENERATION["pad_token_id"]
    return feeds


def _hf_generate(model_dir: Path, feeds: dict[str, np.ndarray], new_tokens: int, **settings) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    causal = "decoder_input_ids" not in feeds
    model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(model_dir).eval()
    ids = torch.from_numpy(feeds["input_ids"])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
            max_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            **settings,
        )
    return out[:, ids.shape[1] if causal else 1 :].numpy()


@pytest.mark.parametrize(("name", "target"), CASES)
def test_cached_greedy_tokens_equal_transformers_generate_batched_and_padded(skills, tiny_models, name, target):
    skill = skills(name, target)
    module = _module(skill.path)
    cache = skill.manifest["generation"]["kv_cache"]
    assert cache["layout"] == "past_key_values inputs/outputs" and cache["encoder_decoder"] == (name == "t5")
    assert "no KV cache" not in skill.manifest["generation"]["note"]
    feeds = _padded(module)
    with module.Skill() as loaded:
        got = loaded.generate(feeds, NEW_TOKENS)
        fixed = loaded.generate(feeds, 6, min_new_tokens=6)
    want = _hf_generate(tiny_models[name], feeds, NEW_TOKENS)
    assert np.array_equal(got, want), (got.tolist(), want.tolist())
    assert fixed.shape == (3, 6)
    assert np.array_equal(fixed, _hf_generate(tiny_models[name], feeds, 6, min_new_tokens=6))


@pytest.mark.parametrize("target", RUNTIMES)
def test_prefill_then_decode_grow_the_cache_by_one_position_a_step(skills, target):
    module = _module(skills("llama", target).path)
    feeds = _padded(module, batch=2, seq=6)
    with module.Skill() as loaded:
        logits, state = loaded.prefill(feeds)
        assert logits.shape == (2, module.INPUTS["input_ids"]["high"])  # (batch, vocab)
        assert set(state["cache"]) == set(module.PAST_NAMES)
        assert {v.shape for v in state["cache"].values()} == {(2, 1, 6, 16)}  # tiny llama: 1 kv head of 16
        whole = loaded(feeds)["logits"][:, -1, :]
        assert np.allclose(logits, whole, atol=1e-5)
        for step in range(3):
            logits, state = loaded.decode(logits.argmax(axis=-1), state)
            assert {v.shape[2] for v in state["cache"].values()} == {7 + step}
            assert state["attention_mask"].shape == (2, 7 + step)
        with pytest.raises(ValueError, match="3 tokens for a state of 2 rows"):
            loaded.decode(np.zeros(3, dtype=np.int64), state)


@pytest.mark.parametrize("name", CACHED)
def test_the_onnx_graph_takes_and_returns_the_cache_and_uses_every_past_input(skills, name):
    import onnx

    path = skills(name, "cpu/onnxruntime").path
    module = _module(path)
    model = onnx.load(str(path / "model.onnx"))
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    assert set(module.PAST_NAMES) <= consumed
    assert [o.name for o in graph.output] == ["logits", *module.PRESENT_NAMES]
    if name != "t5":
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask", *module.PAST_NAMES, "logits_positions"]
        _assert_one_attention_op_per_layer(model, skills(name, "cpu/onnxruntime").manifest, module)
        return
    # An encoder-decoder: the decoder graph never sees the prompt; the encoder's graph, run once, makes
    # every layer's cross-attention keys/values.
    assert [i.name for i in graph.input] == ["attention_mask", "decoder_input_ids", *module.PAST_NAMES]
    encoder = onnx.load(str(path / "encoder.onnx")).graph
    assert [i.name for i in encoder.input] == ["input_ids", "attention_mask"]
    cross = ["present" + n.removeprefix("past_key_values") for n in module.CROSS_NAMES]
    assert [o.name for o in encoder.output] == ["encoder_last_hidden_state", *cross]
    assert skills(name, "cpu/onnxruntime").manifest["artifact"]["encoder"]["file"] == "encoder.onnx"


def _assert_one_attention_op_per_layer(model, manifest: dict, module) -> None:
    """A cached decoder's ONNX Runtime graph comes from the dynamo-inplace-cache exporter: each layer's attention
    is one ONNX Runtime `GroupQueryAttention` whose past inputs are that layer's cache buffers and whose present
    outputs are the same buffers (the skill binds one value to both), so nothing copies the cache: no concat of
    the past with the step's keys/values, no repeat per query head for grouped-query attention (tiny Llama's)."""
    import json

    graph = model.graph
    artifact = manifest["artifact"]
    assert (artifact["exporter"], artifact["opset"]) == ("dynamo-inplace-cache", 24)
    assert artifact["attention"].startswith("GroupQueryAttention"), artifact["attention"]
    fused = [node for node in graph.node if node.op_type == "GroupQueryAttention" and node.domain == "com.microsoft"]
    layers = [
        (module.PAST_NAMES[i : i + 2], module.PRESENT_NAMES[i : i + 2]) for i in range(0, len(module.PAST_NAMES), 2)
    ]
    assert [(list(node.input[3:5]), list(node.output[1:3])) for node in fused] == layers
    in_place = json.loads(next(p.value for p in model.metadata_props if p.key == "accel.kv_cache_in_place"))
    assert in_place == dict(zip(module.PAST_NAMES, module.PRESENT_NAMES, strict=True))
    readers = [node.op_type for node in graph.node if set(node.input) & set(module.PAST_NAMES)]
    assert set(readers) <= {"GroupQueryAttention", "Shape"}, readers


def _kv_cache_check(skill_dir: Path) -> object:
    manifest = load_manifest(skill_dir)
    ctx = Context(skill_path=skill_dir, pristine=pristine_module(manifest), manifest=manifest)
    assert run_check("loads", ctx).status == "passed"
    try:
        return run_check("kv_cache", ctx)
    finally:
        ctx.skill.close()


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        # decode hands the graph a zeroed past instead of its cache
        (
            ('**state["cache"]})', '**{n: np.zeros_like(v) for n, v in state["cache"].items()}})'),
            "differs from the forward on the whole sequence",
        ),
        # decode runs the whole sequence again (the tokens kept in the state), carrying a cache it never reads
        (
            (
                'logits, cache = self._step({"input_ids": tokens, "attention_mask": mask, **state["cache"]})',
                'ids = state.setdefault("ids", [])\n'
                "        ids.append(tokens)\n"
                '        whole = np.concatenate([state["prompt"], *ids], axis=1)\n'
                '        feeds = {"input_ids": whole, "attention_mask": mask, **empty_cache(len(mask))}\n'
                "        logits, _ = self._step(feeds)\n"
                '        cache = {n: np.concatenate([v, v[:, :, -1:]], axis=2) for n, v in state["cache"].items()}\n'
                '        return logits[:, -1, :], {**state, "attention_mask": mask, "cache": cache}',
            ),
            "same logits with its cache zeroed",
        ),
    ],
    ids=["zeroed-past", "recomputes-the-sequence"],
)
def test_a_skill_that_ignores_its_cache_fails_the_kv_cache_check(skills, tmp_path, edit, why):
    original = skills("gpt2", "cpu/onnxruntime").path
    assert _kv_cache_check(original).status == "passed"
    broken = shutil.copytree(original, tmp_path / original.name)
    source = (broken / "skill.py").read_text()
    old, new = edit
    assert old in source
    source = source.replace(old, new)
    # the recomputing variant keeps the prompt in its state
    source = source.replace(
        'return logits[:, -1, :].copy(), {"attention_mask": feeds["attention_mask"], "cache": cache}',
        'return logits[:, -1, :].copy(), {"attention_mask": feeds["attention_mask"], "cache": cache, '
        '"prompt": feeds["input_ids"]}',
    )
    (broken / "skill.py").write_text(source)
    result = _kv_cache_check(broken)
    assert result.status == "failed" and why in result.message, result.message


def test_a_cached_skill_runs_standalone(skills, python_without_accel):
    path = skills("llama", "cpu/openvino").path
    result = subprocess.run(
        [str(python_without_accel), "-I", "skill.py"], cwd=path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generate: [2, 4] new tokens" in result.stdout


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_openvino_keeps_a_cached_decoders_cache_in_its_state_appended_inside_attention(skills, name):
    """OpenVINO runs a decoder-only graph as its stateful IR: no past inputs or present outputs, a state per
    past input, and the CPU plugin's attention reads each layer's state itself (it appends the new keys and
    values in place: ScaledDotProductAttentionWithKVCache), which is what makes its decode fast."""
    import openvino

    skill = skills(name, "cpu/openvino")
    artifact = skill.manifest["artifact"]
    assert (artifact["exporter"], artifact["file"], artifact["kv_cache"]) == (
        "openvino-stateful",
        "model.xml",
        "stateful",
    )
    module = _module(skill.path)
    model = openvino.Core().read_model(str(skill.path / "model.xml"))
    assert sorted(i.get_any_name() for i in model.inputs) == [
        "attention_mask",
        "beam_idx",
        "input_ids",
        "logits_positions",
    ]
    assert [o.get_any_name() for o in model.outputs] == ["logits"]
    compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    assert sorted(s.name for s in request.query_state()) == sorted(
        past + "present" + past.removeprefix("past_key_values") for past in module.PAST_NAMES
    )
    runtime = compiled.get_runtime_model()
    kinds = {op.get_friendly_name(): op.get_rt_info()["layerType"].astype(str) for op in runtime.get_ops()}
    attention = [op for op in runtime.get_ops() if kinds[op.get_friendly_name()] == "ScaledDotProductAttention"]
    assert len(attention) == module.CACHE["layers"]
    for op in attention:  # each takes two states (its layer's keys and values) as inputs of its own
        sources = [kinds[i.get_source_output().get_node().get_friendly_name()] for i in op.inputs()]
        assert sources.count("MemoryInput") == 2, sources


@pytest.mark.parametrize("name", ["llama", "gpt2"])
@pytest.mark.parametrize("target", ["cpu/openvino", "cpu/onnxruntime"])
def test_the_lm_head_runs_on_the_positions_asked_only(skills, target, name):
    """A prefill asks for the last position's logits only; a forward (and any run not told) gets them all."""
    module = _module(skills(name, target).path)
    feeds = _padded(module, batch=2, seq=6)
    with module.Skill() as loaded:
        assert loaded._backend.takes_logits_positions
        full = loaded(feeds)["logits"]
        last = loaded._backend.run({**feeds, **module.empty_cache(2), "logits_positions": np.array([5])})["logits"]
        prefilled, _ = loaded.prefill(feeds)
    assert full.shape[1] == 6 and last.shape == (2, 1, full.shape[2])
    assert np.allclose(last[:, 0], full[:, -1], atol=1e-5)
    assert np.allclose(prefilled, full[:, -1], atol=1e-5)


@pytest.mark.parametrize("target", ["cpu/openvino", "cpu/onnxruntime"])
def test_a_cache_kept_in_place_continued_from_is_consumed_and_one_left_behind_stays_readable(skills, target):
    """OpenVINO keeps the cache in its request's state, ONNX Runtime in buffers bound as past and present."""
    module = _module(skills("llama", target).path)
    feeds = _padded(module, batch=2, seq=6)
    with module.Skill() as loaded:
        logits, first = loaded.prefill(feeds)
        token = logits.argmax(axis=-1)
        kept = {name: np.array(value) for name, value in first["cache"].items()}
        _, second = loaded.decode(token, first)  # continues in place from `first`
        with pytest.raises(RuntimeError, match="copy it"):
            np.asarray(first["cache"][module.PAST_NAMES[0]])
        # From a copy of the first state: the same step again, while `second` (left behind) stays readable.
        again, _ = loaded.decode(token, {**first, "cache": kept})
        assert {v.shape[2] for v in second["cache"].values()} == {7}
        continued, _ = loaded.decode(again.argmax(axis=-1), second)
        assert continued.shape == logits.shape
        with pytest.raises(ValueError, match="every past key/value input"):
            loaded._backend.run({**feeds, module.PAST_NAMES[0]: kept[module.PAST_NAMES[0]]})


def test_onnxruntime_writes_each_step_into_the_cache_buffer_and_moves_it_when_full(skills):
    """The in-place graph's buffers have room for more positions: a decode step writes its position into the
    same memory, and the step that finds no room moves the cache into a larger buffer; the logits stay those
    of the whole sequence run at once."""
    module = _module(skills("llama", "cpu/onnxruntime").path)
    feeds = _padded(module, batch=2, seq=6)
    name = module.PAST_NAMES[0]
    with module.Skill() as loaded:
        logits, state = loaded.prefill(feeds)
        buffer = loaded._backend.buffers[name][1]
        room = buffer.shape[2]
        assert room > 6 and state["cache"][name].shape == (2, 1, 6, 16)
        tokens = [logits.argmax(axis=-1)]
        for _ in range(room - 6):
            logits, state = loaded.decode(tokens[-1], state)
            tokens.append(logits.argmax(axis=-1))
        assert loaded._backend.buffers[name][1] is buffer  # every step so far wrote into the prefill's buffer
        assert np.array_equal(np.asarray(state["cache"][name]), buffer[:, :, :room])
        logits, state = loaded.decode(tokens[-1], state)  # no room left for this one
        moved = loaded._backend.buffers[name][1]
        assert moved is not buffer and moved.shape[2] > room and state["cache"][name].shape[2] == room + 1
        whole = {
            "input_ids": np.concatenate([feeds["input_ids"], np.stack(tokens, axis=1)], axis=1),
            "attention_mask": np.asarray(state["attention_mask"]),
        }
        assert np.allclose(logits, loaded(whole)["logits"][:, -1, :], atol=1e-4)
