"""The measured peak is the best GEMM of every runtime here, so no skill's MFU can pass 100% by a slow probe."""

from accel.hardware.peak_flops import probe_in_process


def test_the_cpu_fp32_probe_times_every_runtimes_gemm_and_keeps_the_best():
    probe = probe_in_process("cpu", "float32", 1, seconds=0.6)
    assert set(probe["kernels"]) == {"torch", "onnxruntime", "openvino"}
    assert probe["kernel"] == max(probe["kernels"], key=probe["kernels"].get)
    assert abs(probe["flops"] - probe["kernels"][probe["kernel"]]) <= 1
    assert all(value > 1e9 for value in probe["kernels"].values())  # a real product, not a guess
    assert 0 <= probe["spread"] < 1 and probe["median_flops"] <= probe["flops"]


def test_a_bf16_probe_times_torch_alone():
    probe = probe_in_process("cpu", "bfloat16", 1, seconds=0.3)
    assert set(probe["kernels"]) == {"torch"} and probe["kernel"] == "torch"
