import pytest

from accel.hardware import (
    HARDWARE,
    RUNTIMES,
    SUPPORTED_PRECISIONS,
    Target,
    TargetError,
    all_targets,
    parse_targets,
    work_pool_name,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("cpu/torch", "cpu/torch"),
        ("cpu/torch:fp32", "cpu/torch"),
        ("CPU/ONNXRuntime", "cpu/onnxruntime"),
        ("cpu/ort", "cpu/onnxruntime"),
        ("cpu/ov", "cpu/openvino"),
        ("cuda/torch:fp16", "cuda/torch:fp16"),
        ("cuda/torch:bfloat16", "cuda/torch:bf16"),
        (" cpu/onnxruntime:int8 ", "cpu/onnxruntime:int8"),
    ],
)
def test_parse_gives_the_canonical_target(text, canonical):
    target = Target.parse(text)
    assert str(target) == canonical
    assert Target.parse(canonical) == target


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("cpu", "malformed target"),
        ("cpu/torch/extra", "malformed target"),
        ("", "malformed target"),
        ("tpu/torch", "unknown hardware 'tpu'"),
        ("cpu/tensorrt", "unknown runtime 'tensorrt'"),
        ("cpu/torch:fp8", "unknown precision 'fp8'"),
        ("mps/openvino", "does not run on mps"),
        ("cpu/torch:fp16", "supported: fp32, bf16"),
        ("cpu/torch; rm -rf /", "malformed target"),
    ],
)
def test_bad_targets_say_what_was_wrong_and_what_is_accepted(text, says):
    with pytest.raises(TargetError) as err:
        Target.parse(text)
    message = str(err.value)
    assert says in message
    if "malformed" in says or "unknown" in says:
        for word in (*HARDWARE, *RUNTIMES):
            assert word in message


def test_parse_targets_splits_commas_and_drops_duplicates():
    targets = parse_targets("cpu/torch, cpu/onnxruntime,cpu/torch:fp32")
    assert [str(t) for t in targets] == ["cpu/torch", "cpu/onnxruntime"]
    assert parse_targets(["cpu/openvino", "cpu/torch,cpu/openvino"]) == [
        Target.parse("cpu/openvino"),
        Target.parse("cpu/torch"),
    ]
    with pytest.raises(TargetError, match="no target given"):
        parse_targets(" , ")


def test_each_hardware_has_its_own_work_pool():
    assert {hw: work_pool_name(hw) for hw in HARDWARE} == {
        "cpu": "accel-cpu",
        "cuda": "accel-cuda",
        "rocm": "accel-rocm",
        "mps": "accel-mps",
        "xpu": "accel-xpu",
    }
    assert Target.parse("cuda/onnxruntime").work_pool == "accel-cuda"
    with pytest.raises(TargetError):
        work_pool_name("gpu")


def test_all_targets_is_the_support_matrix_and_every_one_parses_back():
    targets = all_targets()
    assert len(targets) == sum(len(p) for p in SUPPORTED_PRECISIONS.values())
    assert all(Target.parse(str(t)) == t for t in targets)
    assert all(SUPPORTED_PRECISIONS[(hw, rt)][0] == "fp32" for (hw, rt) in SUPPORTED_PRECISIONS)
