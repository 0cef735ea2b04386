"""An entry for tests/tasks/test_isolated.py: `main(argv)` does what argv[0] says and reports JSON lines."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

LEAK: list[bytes] = []  # what a child allocates here must never be seen by the next child


def main(argv: list[str]) -> int:
    mode, fd = argv[0], int(argv[argv.index("--report-fd") + 1])
    with os.fdopen(fd, "w", buffering=1) as report:

        def emit(**fields: object) -> None:
            report.write(json.dumps(fields) + "\n")

        emit(
            event="hello",
            pid=os.getpid(),
            pgid=os.getpgid(0),
            sid=os.getsid(0),
            cwd=os.getcwd(),
            probe_env=os.environ.get("ACCEL_PROBE"),
            random=random.random(),
            leak=len(LEAK),
        )
        print("a line on stdout")
        print("a line on stderr", file=sys.stderr)
        if mode == "segfault":
            os.kill(os.getpid(), 11)
        elif mode == "exit":
            os._exit(7)
        elif mode == "raise":
            raise ValueError("the probe raised")
        elif mode == "hang":
            time.sleep(120)
        elif mode == "grandchild":  # a child of the child, in its process group: a timeout kills it too
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            emit(event="grandchild", pid=child.pid)
            time.sleep(120)
        elif mode == "allocate":
            LEAK.append(b"x" * (200 << 20))
            emit(event="allocated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def wait_for_interrupt(folder: str, progress) -> None:
    """For `call`: says it started, then waits; an interrupt (SIGINT) is caught, noted in `folder`, and ends it."""
    try:
        progress("waiting", 0.0)  # inside: an interrupt that comes right after it is caught too
        time.sleep(120)
    except KeyboardInterrupt:
        with open(os.path.join(folder, "interrupted"), "w") as note:
            note.write(str(os.getpid()))
        raise
