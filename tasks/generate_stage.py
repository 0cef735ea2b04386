"""The generate stage: generation in a process of its own, as the flows run it.

`generate_skill` (the Prefect task) runs tasks/generate_runner in an isolated process forked warm from
the server that has imported torch and transformers (tasks/isolated), so a flow's own process imports
neither: a chain's flow-run process starts in about a second instead of five. The skill is recorded
in the results store here, from what the process reported. An error it reports is raised again as the
same kind (GenerationError, ModelRefError, ...) with the same message; a process that crashes or
hangs is a GenerationError that says so.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task

from accel.tasks import isolated
from accel.tasks.errors import GenerationError
from accel.tasks.generated import GeneratedSkill, record_skill
from accel.tasks.isolated.call import raised_again
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
    argv = [ref, target, *(["--force"] if force else []), *(["--out-dir", out_dir] if out_dir else [])]
    argv += ["--device-slot", device_slot] if device_slot else []
    with isolated.start("accel.tasks.generate_runner:main", argv, REFERENCE_PRELOAD) as process:
        for event in process.events(step_timeout_s):
            if event["event"] == "progress" and progress:
                progress(event["step"], event["fraction"])
            elif event["event"] == "done":
                return GeneratedSkill.model_validate(event["skill"])
            elif event["event"] == "error":
                raise raised_again(event["kind"], event["message"], GenerationError)
        if process.timed_out:
            process.kill()
            ended = f"made no progress for {step_timeout_s:g} s and was killed"
        else:
            ended = isolated.describe_exit(process.wait())
        tail = " / ".join(process.tail(6))
    raise GenerationError(f"the generation process {ended} before it finished: {tail}"[:4000])


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
