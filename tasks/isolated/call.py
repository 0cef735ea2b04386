"""`call(entry, preload, **kwargs)`: a function run in an isolated process, its result returned here.

For work that needs the heavy libraries only for a moment (resolving a model reads its family through
transformers, which imports torch): the caller stays light, the work forks warm from the server that
has them. The function takes JSON-able keyword arguments and returns a pydantic model or a JSON-able
value; an exception there is raised here again as the same kind from tasks/errors (any other kind as
`failure`, naming it), with the same message. Given `progress`, the function gets a `progress(step,
fraction)` of its own whose reports reach the caller's, and each report restarts the timeout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from accel.tasks.isolated.process import describe_exit, interrupt_all, start

CALL_TIMEOUT_S = 600.0


def raised_again(kind: str, message: str, other: type[Exception] = RuntimeError) -> Exception:
    """The exception a process reported: the same kind when it is one of tasks/errors, else `other`."""
    from accel.tasks import errors

    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found(message)
    return other(f"{kind}: {message}")


def call(
    entry: str,
    preload: tuple[str, ...],
    *,
    timeout_s: float = CALL_TIMEOUT_S,
    progress: Callable[[str, float], None] | None = None,
    failure: type[Exception] = RuntimeError,
    extra_env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """What `entry` ("package.module:function") returned for `kwargs`, computed in an isolated process
    (with this process's environment and `extra_env` over it).

    `timeout_s` bounds the wait for each report (the answer, or a progress report)."""
    argv = [entry, json.dumps(kwargs), *(["--progress"] if progress else [])]
    with start("accel.tasks.isolated.call:main", argv, preload, extra_env) as process:
        try:
            for event in process.events(timeout_s):
                if event["event"] == "progress" and progress:
                    progress(event["step"], event["fraction"])
                elif event["event"] == "done":
                    return event["result"]
                elif event["event"] == "error":
                    raise raised_again(event["kind"], event["message"], failure)
        except KeyboardInterrupt:  # Ctrl-C here interrupts the work there too, and lets it end cleanly
            process.interrupt()
            raise
        if process.timed_out:
            process.kill()
            ended = f"made no progress for {timeout_s:g} s and was killed"
        else:
            ended = describe_exit(process.wait())
        tail = " / ".join(process.tail(6))
    raise failure(f"the process running {entry} {ended} before it answered: {tail}"[:4000])


def _interrupted(_signum: int, _frame: object) -> None:
    interrupt_all()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.isolated.call")
    parser.add_argument("entry")
    parser.add_argument("kwargs", help="keyword arguments as a JSON object")
    parser.add_argument("--progress", action="store_true", help="pass the function a progress(step, fraction)")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    with os.fdopen(args.report_fd, "w", buffering=1) as report:
        module_name, _, name = args.entry.partition(":")
        kwargs = json.loads(args.kwargs)
        if args.progress:
            kwargs["progress"] = lambda step, fraction: report.write(
                json.dumps({"event": "progress", "step": step, "fraction": fraction}) + "\n"
            )
        # Ctrl-C reaches this process from its caller (`call` passes it on): what it started ends too
        signal.signal(signal.SIGINT, _interrupted)
        try:
            result = getattr(importlib.import_module(module_name), name)(**kwargs)
            if hasattr(result, "model_dump"):
                result = result.model_dump(mode="json")
            report.write(json.dumps({"event": "done", "result": result}, default=str) + "\n")
        except Exception as err:
            report.write(json.dumps({"event": "error", "kind": type(err).__name__, "message": str(err)[:4000]}) + "\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
