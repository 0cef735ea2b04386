"""The benchmark settings a run request carries reach the flows' BenchConfig, and bad ones are refused."""

import pytest
from pydantic import ValidationError

from accel.api.schemas.operations import BenchmarkRunRequest, PipelineRequest
from accel.tasks.benchmark import BenchConfig


def test_a_pipeline_request_carries_the_generate_scenario_and_timing_settings():
    request = PipelineRequest(
        models=["sentence-transformers/all-MiniLM-L6-v2"],
        targets=["cpu/onnxruntime"],
        batch_sizes=[1],
        min_seconds=0.5,
        min_iters=3,
        rounds=2,
        generate_batch_sizes=[1, 4],
        prompt_tokens=128,
        new_tokens=32,
    )
    config = BenchConfig.model_validate(request.bench())
    assert (config.min_iters, config.rounds, config.generate_batches) == (3, 2, [1, 4])
    assert (config.prompt_tokens, config.new_tokens, config.batches, config.min_seconds) == (128, 32, [1], 0.5)


def test_unset_settings_keep_the_defaults():
    request = BenchmarkRunRequest(model="sentence-transformers/all-MiniLM-L6-v2")
    assert request.bench() == {}


@pytest.mark.parametrize(
    "field", [{"new_tokens": 0}, {"generate_batch_sizes": [0]}, {"rounds": 21}, {"min_iters": 0}, {"prompt_tokens": 0}]
)
def test_out_of_range_settings_are_refused_naming_the_field(field):
    with pytest.raises(ValidationError, match=next(iter(field))):
        PipelineRequest(models=["sentence-transformers/all-MiniLM-L6-v2"], targets=["cpu/torch"], **field)
