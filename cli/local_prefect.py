"""A Prefect server kept for the next `accel run`: started on first need, stopped after idle minutes.

Without `accel up` or PREFECT_API_URL, every `accel run` used to start a temporary Prefect server and
stop it again (3-6 s of every run). Now the first one starts a local server (SQLite under
$ACCEL_HOME/prefect, loopback, a free port) detached, with a watchdog (`python -m
accel.cli.local_prefect --watch`) that stops it once no flow run has been active for
`IDLE_STOP_S`; later runs find it in `local-server.json` and use it at once, and its runs stay in its
UI meanwhile. `ACCEL_LOCAL_PREFECT=0` keeps Prefect's own temporary server per run instead.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from accel.settings import Settings

IDLE_STOP_S = 900.0
START_TIMEOUT_S = 120.0
_ACTIVE = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]


def enabled() -> bool:
    return os.environ.get("ACCEL_LOCAL_PREFECT", "1").strip().lower() not in ("0", "false", "no", "off")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _state_file(settings: Settings) -> Path:
    return settings.prefect_home / "local-server.json"


def _running(state_file: Path) -> str | None:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return state["url"] if _healthy(state["url"]) else None


def local_prefect_api(settings: Settings) -> str:
    """The URL of this ACCEL_HOME's local Prefect server, started (with its watchdog) if none answers."""
    state_file = _state_file(settings)
    if url := _running(state_file):
        return url
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    with open(state_file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once start one server
        if url := _running(state_file):
            return url
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(settings.prefect_home),
            "PREFECT_API_URL": url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        log = open(settings.prefect_home / "local-server.log", "ab")  # noqa: SIM115 (the server's, for its life)
        prefect = str(Path(sys.executable).with_name("prefect"))
        server = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this command, for the next
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                raise RuntimeError(
                    f"the local Prefect server did not start (see {settings.prefect_home / 'local-server.log'})"
                )
            time.sleep(0.2)
        subprocess.Popen(
            [sys.executable, "-m", "accel.cli.local_prefect", "--watch", str(server.pid), url, str(state_file)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        state = {"url": url, "pid": server.pid, "started_at": datetime.now(UTC).isoformat()}
        staging = state_file.with_name(f".{state_file.name}.{os.getpid()}")
        staging.write_text(json.dumps(state))
        staging.replace(state_file)
        return url


def busy(url: str, idle_s: float) -> bool:
    """Whether a flow run is active there, or one ended within the last `idle_s`."""
    since = (datetime.now(UTC) - timedelta(seconds=idle_s)).isoformat()
    queries = [
        {"flow_runs": {"state": {"type": {"any_": _ACTIVE}}}, "limit": 1},
        {"flow_runs": {"end_time": {"after_": since}}, "limit": 1},
    ]
    return any(httpx.post(f"{url}/flow_runs/filter", json=q, timeout=10.0).json() for q in queries)


def watch(pid: int, url: str, state_file: Path, idle_s: float, poll_s: float = 15.0) -> None:
    """Stop the server `pid` once it has been idle for `idle_s`; return when it is gone."""
    started = time.monotonic()
    while True:
        time.sleep(poll_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if time.monotonic() - started < idle_s or busy(url, idle_s):
                continue
        except (httpx.HTTPError, ValueError):
            continue  # not answering this moment: ask again next time
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(state_file.read_text()).get("pid") == pid:
                state_file.unlink()
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.cli.local_prefect", description="the local server's watchdog")
    parser.add_argument("--watch", nargs=3, metavar=("PID", "URL", "STATE_FILE"), required=True)
    args = parser.parse_args(argv)
    pid, url, state_file = args.watch
    idle_s = float(os.environ.get("ACCEL_LOCAL_PREFECT_IDLE_S", IDLE_STOP_S))
    watch(int(pid), url, Path(state_file), idle_s, poll_s=min(15.0, max(0.5, idle_s / 4)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
