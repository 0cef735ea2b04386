"""One round of one point in a fresh process (tasks/bench_runner, started by tasks/isolated), and what
its end means.

This process blocks in select while the runner measures (it takes no CPU from it: a polling parent
cost optimum-benchmark ~70% of a core). A process that dies without a result is `oom` only when the
kernel says it killed it for memory (its cgroup's memory.events `oom_kill`, or /proc/vmstat's, rising
while it ran); killed by a signal otherwise, it is `killed`; a crash (SIGSEGV, an exit code) is `error`.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from accel.tasks import isolated
from accel.tasks.isolated import peak_rss_of

EXIT_GRACE_S = 30.0  # after its report, a benchmark process gets this long to exit before it is killed
_KILLS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _cgroup_events() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "memory.events"
    except OSError:
        pass
    return None


def oom_kills() -> dict[str, int]:
    """The kernel's OOM-kill counters this process can read (its cgroup's, the whole machine's)."""
    found: dict[str, int] = {}
    sources = [(_cgroup_events(), "cgroup memory.events"), (Path("/proc/vmstat"), "/proc/vmstat")]
    for path, name in sources:
        try:
            for line in path.read_text().splitlines() if path else []:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    found[name] = int(value)
        except (OSError, ValueError):
            continue
    return found


def _death(code: int | None, before: dict[str, int], after: dict[str, int], tail: str) -> dict[str, Any]:
    if code is None:
        ended = isolated.describe_exit(code)
        return {"status": "error", "error": f"the benchmark process {ended}, without a result. {tail}"}
    if code >= 0:
        return {"status": "error", "error": f"the benchmark process exited with code {code} without a result. {tail}"}
    name = signal.Signals(-code).name
    rose = [k for k in after if after[k] > before.get(k, after[k])]
    if rose:
        status, why = "oom", f"the kernel's OOM killer killed it ({', '.join(rose)} oom_kill rose)"
    elif -code in _KILLS:
        status, why = "killed", f"it was killed by {name}, and the kernel reports no OOM kill"
    else:
        status, why = "error", f"it crashed with {name}"
    return {"status": status, "error": f"the benchmark process died without a result: {why}. {tail}"}


def point_preload(runtime: str) -> tuple[str, ...]:
    """What a point's process imports before the skill: numpy and its runtime (the skill's own top level)."""
    return ("numpy", runtime, "accel.tasks.bench_runner")


def spawn_point(skill_dir: Path, point: dict[str, Any], timeout_s: float, runtime: str) -> dict[str, Any]:
    """Run one round of one point in a fresh process; what it reported (its peak RSS included), or why not."""
    kills_before = oom_kills()
    argv = [str(skill_dir), "--point", json.dumps(point)]
    with isolated.start("accel.tasks.bench_runner:main", argv, point_preload(runtime)) as process:
        reports = list(process.events(timeout_s))
        if process.timed_out:
            peak = peak_rss_of(process.pid)
            process.kill()
            return {
                "status": "timeout",
                "error": f"no result within {timeout_s:.0f} s; the process was killed",
                "peak_rss_bytes": peak,
            }
        code = process.wait(EXIT_GRACE_S)
        if reports:
            return reports[-1]
        found = _death(code, kills_before, oom_kills(), " / ".join(process.tail(6)))
    found["error"] = found["error"][:2000]
    return found
