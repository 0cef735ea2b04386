"""The generate stage: generation in a process of its own, as the flows run it.

`generate_skill` (the Prefect task) runs tasks/generate_runner (through tasks/isolated/call) in an
isolated process forked warm from the server that has imported torch and transformers, so a flow's
own process imports neither: a chain's flow-run process starts in about a second instead of five. The skill is recorded
in the results store here, from what the process reported. An error it reports is raised again as the
same kind (GenerationError, ModelRefError, ...) with the same message; a process that crashes or
hangs is a GenerationError that says so.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task

from accel.tasks.errors import GenerationError
from accel.tasks.generated import GeneratedSkill, record_skill
from accel.tasks.isolated.call import call
from accel.tasks.progress import stage_progress
from accel.tasks.reference import REFERENCE_PRELOAD

# Between two reports (an export step of a large model on a slow machine can take this long).
GENERATION_STEP_TIMEOUT_S = 3600.0


def generate_isolated(
    ref: str,
    target: str,
    *,
    force: bool = False,
    out_dir: str | None = None,
    progress: Callable[[str, float], None] | None = None,
    step_timeout_s: float = GENERATION_STEP_TIMEOUT_S,
    device_slot: str | None = None,
) -> GeneratedSkill:
    """Generate (or reuse) the skill of `ref` for `target` in an isolated process; what it made.

    `device_slot` (a hardware kind): its work on the device waits for that device's benchmark slot
    (the pipeline generating beside a benchmark, flows/pipeline.overlap_plan)."""
    made = call(
        "accel.tasks.generate_runner:generate_here",
        REFERENCE_PRELOAD,
        timeout_s=step_timeout_s,
        progress=progress,
        failure=GenerationError,
        ref=ref,
        target=target,
        out_dir=out_dir,
        force=force,
        device_slot=device_slot,
    )
    return GeneratedSkill.model_validate(made)


@task(name="generate_skill", task_run_name="generate {ref} for {target}")
def generate_skill(ref: str, target: str, force: bool = False, out_dir: str | None = None) -> GeneratedSkill:
    """Prefect task: generate (or reuse) the skill of `ref` for `target` and record it in the results store.

    No retries: a model that does not export or does not match its reference fails the same way again.
    """
    skill = generate_isolated(
        ref, target, force=force, out_dir=out_dir, progress=stage_progress("generate", model=ref, target=target)
    )
    record_skill(skill)
    return skill
