"""`python -m accel.tasks.check_runner`: run checks on one skill and report each as a JSON line.

The test stage starts this in a process of its own, so a skill that crashes or hangs takes only this
process down. Reports go to a file descriptor of their own (--report-fd), never stdout, which the
skill and its libraries may write to. Events: `ready` once the reference is rendered (the end of
start-up), then `start` and `result` per check, `fatal` when start-up fails, `done` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from accel.tasks.checks import CHECKS, CheckResult, Context, run_check
from accel.tasks.manifest import load_manifest
from accel.tasks.reference import pristine_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.check_runner")
    parser.add_argument("skill_dir", type=Path)
    parser.add_argument("--checks", required=True, help="comma-separated check names, in order")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    report = os.fdopen(args.report_fd, "w", buffering=1)

    def emit(event: str, **fields: object) -> None:
        report.write(json.dumps({"event": event, **fields}) + "\n")

    try:
        manifest = load_manifest(args.skill_dir)
        pristine = pristine_module(manifest)
    except Exception as err:  # e.g. the reference model's files moved: nothing can be compared
        emit("fatal", message=f"cannot build the reference for this skill: {type(err).__name__}: {err}"[:2000])
        return 1
    emit("ready")
    # The skill's own skill.py is imported by the `loads` check, so whatever it does at import is a verdict.
    ctx = Context(skill_path=args.skill_dir, pristine=pristine, manifest=manifest)
    outcome: dict[str, str] = {}
    for name in args.checks.split(","):
        emit("start", check=name)
        missing = [need for need in CHECKS[name].needs if outcome.get(need) != "passed"]
        if missing:
            result = CheckResult(check=name, status="skipped", message=f"needs {', '.join(missing)} to pass first")
        else:
            result = run_check(name, ctx)
        outcome[name] = result.status
        emit("result", result=result.model_dump())
    if ctx.skill is not None:
        try:
            ctx.skill.close()
        except BaseException as err:  # the verdicts are in; a failing close is reported, not fatal
            emit("close_error", message=f"{type(err).__name__}: {err}"[:500])
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
