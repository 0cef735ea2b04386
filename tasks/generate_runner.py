"""`python -m accel.tasks.generate_runner REF TARGET`: generate (or reuse) one skill and report it.

The generate stage starts this in a process of its own (tasks/isolated: forked from the server that
has imported torch and transformers), so the flow's own process never imports them, and an exporter
that crashes takes only this process down. Reports go to --report-fd as JSON lines: `progress` (step,
fraction), then `done` (the GeneratedSkill) or `error` (the exception's kind and message).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.generate_runner")
    parser.add_argument("ref")
    parser.add_argument("target")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--device-slot", help="hold this hardware's device slot for the work on the device")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    report = os.fdopen(args.report_fd, "w", buffering=1)

    def emit(event: str, **fields: object) -> None:
        report.write(json.dumps({"event": event, **fields}, default=str) + "\n")

    from accel.tasks.device_lock import device_slot
    from accel.tasks.generate import generate

    try:
        skill = generate(
            args.ref,
            args.target,
            out_dir=args.out_dir,
            force=args.force,
            progress=lambda step, fraction: emit("progress", step=step, fraction=fraction),
            device_guard=(lambda: device_slot(args.device_slot)) if args.device_slot else None,
        )
    except Exception as err:  # the caller raises it again, as the same kind
        emit("error", kind=type(err).__name__, message=str(err)[:4000])
        return 1
    emit("done", skill=skill.model_dump(mode="json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
