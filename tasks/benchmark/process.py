"""One round of one point in a fresh process (tasks/bench_runner), and what its end means.

This process blocks in select while the runner measures (it takes no CPU from it: a polling parent
cost optimum-benchmark ~70% of a core). A process that dies without a result is `oom` only when the
kernel says it killed it for memory (its cgroup's memory.events `oom_kill`, or /proc/vmstat's, rising
while it ran); killed by a signal otherwise, it is `killed`; a crash (SIGSEGV, an exit code) is `error`.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accel.tasks.bench_runner import peak_rss_of

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


def _reap(process: subprocess.Popen, grace_s: float) -> int:
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _death(code: int, before: dict[str, int], after: dict[str, int], tail: str) -> dict[str, Any]:
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


def spawn_point(skill_dir: Path, point: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one round of one point in a fresh process; what it reported (its peak RSS included), or why not."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    kills_before = oom_kills()
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accel.tasks.bench_runner",
                str(skill_dir),
                "--point",
                json.dumps(point),
                "--report-fd",
                str(write_fd),
            ],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            env=env,
            start_new_session=True,
        )
        os.close(write_fd)
        data = b""
        deadline = time.monotonic() + timeout_s
        timed_out, peak = False, None
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            while True:  # blocks in select: this process takes no CPU from the measurement
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    timed_out, peak = True, peak_rss_of(process.pid)
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        os.close(read_fd)
        code = _reap(process, EXIT_GRACE_S)
        stderr_file.seek(0)
        stderr = stderr_file.read().decode(errors="replace").strip().splitlines()
    if timed_out:
        return {
            "status": "timeout",
            "error": f"no result within {timeout_s:.0f} s; the process was killed",
            "peak_rss_bytes": peak,
        }
    if data.strip():
        return json.loads(data)
    found = _death(code, kills_before, oom_kills(), " / ".join(stderr[-6:]))
    found["error"] = found["error"][:2000]
    return found
