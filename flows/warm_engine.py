"""`accel-flow-run`: `python -m prefect.engine`, started warm. The command a process worker runs for each
flow run of accel's deployments (prefect.yaml sets it as their `command` job variable).

A flow-run process started cold pays for the interpreter, Prefect's import and the flow module's before
the flow begins (and without a `command`, Prefect's process worker first runs a workspace supervisor that
pays for the first two again, then execs the engine): about 2.5 s of a deployment's trigger-to-result on
two cores. Here the worker's process is a thin launcher: it asks the machine's shared fork server that
has already imported Prefect's engine and accel's flows (tasks/isolated) for a child, and that child runs
Prefect's own `prefect.engine` main, as `python -m prefect.engine` would, in a fresh process of its own.
The launcher is what the worker sees: the child writes to its stdout, the signals the worker sends it
(cancellation's SIGTERM, Ctrl-C's SIGINT) go on to the child, and it exits with the child's status. Should
it die, its connection closes and the server kills the child, so nothing outlives it.

Where no shared server can serve (ACCEL_SHARED_FORK_SERVERS or ACCEL_WARM_PROCESSES off, or the server
cannot start) the launcher execs `python -m prefect.engine` itself: the cold start, as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accel.tasks.isolated.servers import ChildExit

ENGINE_ENTRY = "accel.flows.warm_engine:run_engine"
# What the engine and the flows import before a flow begins (the flows import the stages' tasks, which
# import no torch: the model work runs in processes of its own, forked from other servers).
ENGINE_PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect._internal.metrics",
    "accel.flows.chain",
    "accel.flows.stages",
    "accel.flows.pipeline",
    "accel.flows.nightly",
)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_engine(argv: list[str]) -> int:
    """In the forked child: Prefect's own `python -m prefect.engine ARGS`, its __main__ run as it is."""
    import runpy
    import warnings

    import prefect.context

    cut = argv.index("--report-fd")
    os.close(int(argv[cut + 1]))  # nothing to report but the exit status, which the server sends
    prefect.context.refresh_global_settings_context()  # this flow run's environment, not the server's
    sys.argv = ["prefect.engine", *argv[:cut]]
    # runpy warns that the module it runs as __main__ was imported already: here that is the point
    warnings.filterwarnings("ignore", message="'prefect.engine' found in sys.modules", category=RuntimeWarning)
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    return 0


def _cold(args: list[str]) -> None:
    """Become `python -m prefect.engine ARGS` (same pid, stdio and signals): the start without a server."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *args])


def _exit_like(code: int | None) -> int:
    """Leave as the child left: its exit code, or killed by its signal (what the worker reads as crashed)."""
    if code is None:
        print("accel-flow-run: the flow run's exit status was lost (its fork server died first)", file=sys.stderr)
        return 1
    if code < 0:
        sys.stdout.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def start_child(entry: str, preload: tuple[str, ...], args: list[str]) -> ChildExit:
    """`entry` with `args` in a child of the shared server for `preload`, writing to this process's stdout
    (ServerGone, OSError or TimeoutError when no server could start it: nothing started then)."""
    from accel.tasks.isolated.servers import fork_server

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        return fork_server(preload).start(entry, args, devnull, sys.stdout.fileno(), dict(os.environ))
    finally:
        os.close(devnull)


def stand_in_for(child: ChildExit) -> int:
    """Be the child as far as whoever started this process can tell: the signals this process gets go on
    to it, and its exit status becomes this process's."""

    def forward(signum: int, _frame: types.FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)  # the child leads a session of its own: its children get it too

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    return _exit_like(child(None))


def main(argv: list[str] | None = None) -> int:
    from accel.tasks.isolated.process import warm_enabled
    from accel.tasks.isolated.servers import ServerGone, shared_enabled

    args = sys.argv[1:] if argv is None else argv
    if not (warm_enabled() and shared_enabled()):
        _cold(args)
    try:
        child = start_child(ENGINE_ENTRY, ENGINE_PRELOAD, args)
    except (ServerGone, OSError, TimeoutError) as err:
        print(f"accel-flow-run: no warm engine ({err}); starting it cold", file=sys.stderr)
        _cold(args)
    return stand_in_for(child)


if __name__ == "__main__":
    sys.exit(main())
