"""`call(entry, preload, **kwargs)`: a function run in an isolated process, its result returned here.

For work that needs the heavy libraries only for a moment (resolving a model reads its family through
transformers, which imports torch): the caller stays light, the work forks warm from the server that
has them. The function takes JSON-able keyword arguments and returns a pydantic model or a JSON-able
value; an exception there is raised here again as the same kind from tasks/errors (any other kind as
a RuntimeError naming it), with the same message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from accel.tasks.isolated.process import describe_exit, start

CALL_TIMEOUT_S = 600.0


def raised_again(kind: str, message: str, other: type[Exception] = RuntimeError) -> Exception:
    """The exception a process reported: the same kind when it is one of tasks/errors, else `other`."""
    from accel.tasks import errors

    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found(message)
    return other(f"{kind}: {message}")


def call(entry: str, preload: tuple[str, ...], timeout_s: float = CALL_TIMEOUT_S, **kwargs: Any) -> Any:
    """What `entry` ("package.module:function") returned for `kwargs`, computed in an isolated process."""
    with start("accel.tasks.isolated.call:main", [entry, json.dumps(kwargs)], preload) as process:
        for event in process.events(timeout_s):
            if event["event"] == "done":
                return event["result"]
            if event["event"] == "error":
                raise raised_again(event["kind"], event["message"])
        if process.timed_out:
            process.kill()
            ended = f"gave no answer within {timeout_s:g} s and was killed"
        else:
            ended = describe_exit(process.wait())
        tail = " / ".join(process.tail(6))
    raise RuntimeError(f"the process running {entry} {ended}: {tail}"[:4000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.isolated.call")
    parser.add_argument("entry")
    parser.add_argument("kwargs", help="keyword arguments as a JSON object")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    with os.fdopen(args.report_fd, "w", buffering=1) as report:
        module_name, _, name = args.entry.partition(":")
        try:
            result = getattr(importlib.import_module(module_name), name)(**json.loads(args.kwargs))
            if hasattr(result, "model_dump"):
                result = result.model_dump(mode="json")
            report.write(json.dumps({"event": "done", "result": result}, default=str) + "\n")
        except Exception as err:
            report.write(json.dumps({"event": "error", "kind": type(err).__name__, "message": str(err)[:4000]}) + "\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
