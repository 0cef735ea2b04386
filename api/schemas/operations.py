"""What the POST endpoints take and answer, and the run status every component reports.

Field names come from the seed plan (`operation_id`, `status`, `message`, `started_at`); `state` is
Prefect's own state type beside the seed's word.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from accel.api.schemas.runs import Status as SeedStatus
from accel.flows.results import ChainResult
from accel.hardware.targets import Target
from accel.tasks.levels import LEVEL_NAMES

Level = Literal["basic", "comprehensive", "fault_tolerance"]
assert set(LEVEL_NAMES) == set(Level.__args__)  # one list of levels

MAX_RUN_CELLS = 128  # runs one request may start: models x targets (OWASP API4)

# A model ref is a Hub id (org/name[@revision]), a packaged model or a local path: printable, no control
# characters, bounded. Whether it resolves is the worker's answer (it may have models this host lacks).
MODEL_REF_PATTERN = r"^[^\x00-\x1f\x7f]{1,512}$"


def _model_ref(ref: str) -> str:
    import re

    ref = ref.strip()
    if not re.match(MODEL_REF_PATTERN, ref):
        raise ValueError(
            "a model ref is a Hub id (org/name[@revision]), a packaged model or a local path: "
            "1-512 printable characters"
        )
    return ref


ModelRef = Annotated[str, AfterValidator(_model_ref)]
TargetName = Annotated[str, AfterValidator(lambda value: str(Target.parse(value)))]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Shapes(_Request):
    batch_sizes: list[int] | None = Field(
        None, min_length=1, max_length=16, description="Benchmark batch sizes (default 1)."
    )
    sequence_lengths: list[int] | None = Field(
        None, min_length=1, max_length=16, description="Sequence lengths (default: the skill's)."
    )
    min_seconds: float | None = Field(None, ge=0, le=600, description="Per benchmark round.")
    min_iters: int | None = Field(None, ge=1, le=10_000, description="Timed calls per round, at least (default 10).")
    rounds: int | None = Field(None, ge=1, le=20, description="Interleaved rounds per point (default 3).")
    generate_batch_sizes: list[int] | None = Field(
        None, min_length=1, max_length=16, description="The generate scenario's batch sizes (default 1 and 4)."
    )
    prompt_tokens: int | None = Field(
        None, ge=1, le=131_072, description="The generate scenario's prompt (default 256, within the model)."
    )
    new_tokens: int | None = Field(None, ge=1, le=8192, description="Tokens each generate call decodes (default 64).")

    @field_validator("batch_sizes", "sequence_lengths", "generate_batch_sizes")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and any(v < 1 for v in values):
            raise ValueError("every value must be a positive integer")
        return values

    def bench(self) -> dict[str, Any]:
        """The flows' `bench` parameter (a BenchConfig)."""
        bench: dict[str, Any] = {}
        if self.batch_sizes:
            bench["batches"] = self.batch_sizes
        if self.sequence_lengths:
            bench["seqs"] = self.sequence_lengths
        if self.generate_batch_sizes:
            bench["generate_batches"] = self.generate_batch_sizes
        for name in ("min_seconds", "min_iters", "rounds", "prompt_tokens", "new_tokens"):
            if getattr(self, name) is not None:
                bench[name] = getattr(self, name)
        return bench


def _cells(models: list[str], targets: list[str]) -> None:
    if len(models) * len(targets) > MAX_RUN_CELLS:
        raise ValueError(
            f"{len(models)} models x {len(targets)} targets is {len(models) * len(targets)} runs: at most "
            f"{MAX_RUN_CELLS} per request; split it"
        )


class PipelineRequest(_Shapes):
    models: list[ModelRef] = Field(min_length=1, max_length=64, examples=[["sentence-transformers/all-MiniLM-L6-v2"]])
    targets: list[TargetName] = Field(min_length=1, max_length=32, examples=[["cpu/torch", "cpu/onnxruntime"]])
    level: Level = "comprehensive"
    force: bool = Field(False, description="Generate the skills again.")

    @model_validator(mode="after")
    def _capped(self) -> PipelineRequest:
        _cells(self.models, self.targets)
        return self


class TestRunRequest(_Request):
    model: ModelRef = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    target: TargetName = Field("cpu/torch", examples=["cpu/onnxruntime"])
    level: Level = "basic"


class GenerateRequest(_Request):
    model: ModelRef = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    target: TargetName = Field("cpu/torch", examples=["cpu/openvino"])
    force: bool = False


class GenerateBatchRequest(_Request):
    models: list[ModelRef] = Field(min_length=1, max_length=64)
    targets: list[TargetName] = Field(min_length=1, max_length=32)
    force: bool = False

    @model_validator(mode="after")
    def _capped(self) -> GenerateBatchRequest:
        _cells(self.models, self.targets)
        return self


class BenchmarkRunRequest(_Shapes):
    model: ModelRef = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    target: TargetName = Field("cpu/torch", examples=["cpu/onnxruntime"])


class NightlyRequest(_Request):
    # A file name in the worker's project folder, never a path: the worker reads it, and a path would let a
    # run key have any file of that machine read and quoted back in the run's error (OWASP API8).
    matrix: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\.ya?ml$",
        description="A matrix file in the worker's project folder, by name (default: nightly.yaml).",
    )


class StartedBy(BaseModel):
    """The API key that started a run: its id and name, never its secret."""

    key_id: str
    name: str | None = Field(None, description="None when the key is not in this API's key store")


class OperationResponse(BaseModel):
    """What every POST answers at once: the run it started (its id is the Prefect flow-run id)."""

    operation_id: str
    kind: str
    status: SeedStatus
    state: str | None = Field(None, description="Prefect's state type (SCHEDULED, RUNNING, ...)")
    message: str
    started_at: datetime
    run_url: str | None = Field(None, description="The run in the Prefect UI")
    data: dict[str, Any] | None = None
    started_by: StartedBy | None = None


class BatchOperationResponse(BaseModel):
    operations: list[OperationResponse]


class ChildRun(BaseModel):
    run_id: str
    name: str
    kind: str | None
    state: str | None
    status: SeedStatus
    stage: str | None = None
    progress: float | None = None
    message: str | None = None
    run_url: str | None = None


class RunStatusResponse(BaseModel):
    """A run as its component reports it: Prefect's state, mapped to the seed's words, and its progress."""

    run_id: str
    kind: str | None
    name: str
    status: SeedStatus
    state: str | None
    state_name: str | None
    message: str | None
    progress: float | None = Field(None, ge=0, le=1)
    current_step: str | None = None
    elapsed_time: float | None = Field(None, ge=0, description="Seconds since the run started")
    estimated_remaining_time: float | None = Field(None, ge=0, description="Seconds, from the progress so far")
    waiting_for: str | None = Field(None, description="Why it has not started, e.g. waiting for a worker")
    created: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    run_url: str | None = None
    children: list[ChildRun] = Field(default_factory=list)
    started_by: StartedBy | None = Field(None, description="The API key that started it (runs started elsewhere: none)")


class ChainOutcome(ChainResult):
    """A chain's outcome as the API shows it: the skill's local folder stays on its machine."""

    skill_path: SkipJsonSchema[str | None] = Field(None, exclude=True)


class WorkflowResponse(RunStatusResponse):
    """A pipeline (or nightly) run: its status, its chains with their stage and state, and their rows."""

    results: list[ChainOutcome] = Field(default_factory=list, description="One per model x target, from the store")


class RunList(BaseModel):
    runs: list[RunStatusResponse]
    limit: int
    offset: int
    next_offset: int | None = Field(None, description="The offset of the next page; None on the last page")

    @classmethod
    def page(cls, runs: list[RunStatusResponse], limit: int, offset: int) -> RunList:
        return cls(runs=runs, limit=limit, offset=offset, next_offset=offset + limit if len(runs) == limit else None)
