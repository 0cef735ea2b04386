"""The generate stage as the flows run it: generation in an isolated process, the flow's own stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accel.tasks.errors import GenerationError, ModelRefError
from accel.tasks.generate import generate
from accel.tasks.generate_stage import generate_isolated


def test_the_isolated_generation_makes_the_skill_generate_makes_and_reuses_it(tiny_models, tmp_path):
    ref = str(tiny_models["bert"])
    steps: list[tuple[str, float]] = []
    made = generate_isolated(ref, "cpu/onnxruntime", out_dir=str(tmp_path), progress=lambda s, f: steps.append((s, f)))
    assert not made.reused and (made.path / "skill.py").is_file() and (made.path / "model.onnx").is_file()
    assert len(steps) > 1 and steps[-1] == ("done", 1.0), steps  # the process's progress reached the caller
    again = generate(ref, "cpu/onnxruntime", out_dir=tmp_path)
    assert again.reused and again.skill_id == made.skill_id and again.manifest == made.manifest
    reused = generate_isolated(ref, "cpu/onnxruntime", out_dir=str(tmp_path))
    assert reused.reused and reused.skill_id == made.skill_id


def test_an_error_in_the_process_is_raised_here_as_the_same_kind_with_the_same_message(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelRefError) as here:
        generate(missing, "cpu/torch", out_dir=tmp_path)
    with pytest.raises(ModelRefError) as there:
        generate_isolated(missing, "cpu/torch", out_dir=str(tmp_path))
    assert str(there.value) == str(here.value)


def test_a_generation_that_stops_reporting_is_killed_and_said_so(tiny_models, tmp_path):
    with pytest.raises(GenerationError, match=r"made no progress for 0\.001 s and was killed"):
        generate_isolated(str(tiny_models["gpt2"]), "cpu/torch", out_dir=str(tmp_path), step_timeout_s=0.001)


def test_the_flows_that_run_on_workers_import_neither_torch_nor_transformers():
    probe = (
        "import sys; import accel.flows.chain, accel.flows.stages, accel.flows.pipeline, accel.flows.nightly; "
        "print(','.join(m for m in ('torch', 'transformers', 'onnxruntime', 'openvino') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"a flow-run process would import {out.stdout.strip()} before any work"
