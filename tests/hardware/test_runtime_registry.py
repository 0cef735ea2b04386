"""The runtime registry is the one source of runtime names, precisions, devices, exporters and templates."""

import pytest

from accel.hardware import RUNTIMES, SUPPORTED_PRECISIONS, Target, all_targets, detect
from accel.hardware.runtimes import RUNTIME_SPECS, RUNTIMES_BY_NAME, runtime_spec
from accel.tasks import templates


def test_targets_derive_from_the_registry():
    assert tuple(spec.name for spec in RUNTIME_SPECS) == RUNTIMES
    assert set(SUPPORTED_PRECISIONS) == {(hw, spec.name) for spec in RUNTIME_SPECS for hw in spec.precisions}
    for target in all_targets():
        assert target.device == runtime_spec(target.runtime).devices[target.hardware]
    for spec in RUNTIME_SPECS:
        for alias in spec.aliases:
            assert Target.parse(f"cpu/{alias}").runtime == spec.name


def test_every_runtime_has_one_template_and_exporters():
    assert set(templates.runtimes()) == set(RUNTIMES_BY_NAME)
    for spec in RUNTIME_SPECS:
        assert spec.exporters, spec.name
        assert all(precisions[0] == "fp32" for precisions in spec.precisions.values()), spec.name
        assert set(spec.devices) == set(spec.precisions), spec.name
        if spec.quantized:
            assert spec.graph == "onnx"
        # A cached decoder tries the runtime's own exporters first, then every general one in the same order.
        for hardware in spec.precisions:
            assert spec.exporters_for(hardware, cached_decoder=False) == spec.exporters
            assert spec.exporters_for(hardware, cached_decoder=True)[-len(spec.exporters) :] == spec.exporters
    ort, openvino = RUNTIMES_BY_NAME["onnxruntime"], RUNTIMES_BY_NAME["openvino"]
    # ONNX Runtime: its cache updated in place first, then the same graph concatenating it each step
    assert ort.exporters_for("cpu", cached_decoder=True)[:2] == (
        ("dynamo-inplace-cache", "model.onnx"),
        ("dynamo-attention", "model.onnx"),
    )
    assert ort.exporters_for("cuda", cached_decoder=True) == ort.exporters  # not measured on a GPU yet
    # OpenVINO: its own stateful IR (the cache kept in the request), never dynamo-attention (it mistranslates it)
    assert openvino.exporters_for("cpu", cached_decoder=True) == (
        ("openvino-stateful", "model.xml"),
        *openvino.exporters,
    )
    assert openvino.exporters_for("xpu", cached_decoder=True) == openvino.exporters  # not measured on a GPU yet


def test_detection_covers_every_registered_runtime():
    profile = detect()
    assert set(profile.runtimes) == set(RUNTIMES_BY_NAME)
    for name in RUNTIMES_BY_NAME:
        assert profile.libraries.get(name), f"{name}'s version is read from its distributions"


def test_an_unknown_runtime_is_named():
    with pytest.raises(KeyError, match="torch, onnxruntime, openvino"):
        runtime_spec("tensorrt")
