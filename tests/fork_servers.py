"""The shared fork servers a test's processes started (they outlive it until idle: tests stop them)."""

from __future__ import annotations

from pathlib import Path

import psutil


def fork_servers_of(home: Path) -> list[psutil.Process]:
    """The shared fork servers (tasks/isolated) started by processes whose ACCEL_HOME is `home` (not their
    children, which a fork leaves with the server's command line)."""
    found = []
    for process in psutil.process_iter(["cmdline", "ppid"]):
        try:
            server = "accel.tasks.isolated.server" in (process.info["cmdline"] or [])
            if server and process.environ().get("ACCEL_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = {p.pid for p in found}
    return [p for p in found if p.info["ppid"] not in pids]
