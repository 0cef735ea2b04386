"""Isolated processes that start warm: one fresh, crash-contained process per check run, benchmark point
and FLOP count, forked from a server that has already imported the heavy libraries.

Importing torch and transformers costs seconds, and every check run and benchmark point used to pay it
in a fresh interpreter. A fork server (server.py: one per parent process and preload set, started on
first use, or one per machine shared by a worker's flow runs: servers.py) imports them once and then
forks a child per request, which runs `module:function(argv + ["--report-fd", N])` and reports JSON
lines on that descriptor.

What isolation keeps:
- the child calls setsid: a process group of its own, so a timeout kills the skill's children too;
- its stdout and stderr go to a log file; its reports to a pipe of their own, never stdout;
- a crash, a hang, `os._exit` or an OOM kill ends only the child: the server reaps it and passes its
  exit status (negative: the signal) back to the caller;
- the server runs no model code, so no allocator cache, thread pool or compiled graph exists in it to
  leak from one child to the next. It forks from its only Python thread; the native threads some
  libraries start at import (OpenBLAS's pool, one of onnxruntime's) are not copied, and those libraries
  re-create them in the child (OpenBLAS shuts its pool down across fork by its own atfork handler);
- peak RSS is the child's own VmHWM: it counts the preloaded pages the child maps (as a fresh process
  that imported the same libraries would), never the server's.

`ACCEL_WARM_PROCESSES=0` starts each process as a fresh interpreter instead, with the same protocol:
for comparison (benchmarks/warm_processes.py) and where fork is not safe.
"""

from accel.tasks.isolated.process import (
    Isolated,
    describe_exit,
    interrupt_all,
    interrupted,
    peak_rss_of,
    raise_if_interrupted,
    start,
    warm_enabled,
)
from accel.tasks.isolated.servers import fork_server, prewarm, stop_servers

__all__ = [
    "Isolated",
    "describe_exit",
    "fork_server",
    "interrupt_all",
    "interrupted",
    "peak_rss_of",
    "prewarm",
    "raise_if_interrupted",
    "start",
    "stop_servers",
    "warm_enabled",
]
