"""Fork servers as their callers see them: which one serves a request, started when there is none.

A server serves one preload set under one import-time environment (libraries read some variables as
they are imported: a caller whose environment differs gets a server of its own).

Two lifetimes:
- own (the default): started by this process on first use, stopped when it exits (the socket closes);
- shared (ACCEL_SHARED_FORK_SERVERS=1, what the deployments in prefect.yaml set): one per machine, user,
  preload set and environment, listening on a Unix socket in a 0700 folder of this user's (the server
  also checks each peer's uid: whoever connects can run code as this user). The first caller starts it
  detached; every flow run of a worker after it forks from it warm, and it exits after
  `SHARED_IDLE_EXIT_S` without a connection. Its key includes the modification times of accel's own
  modules, so an edited checkout never forks stale code.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Ours (ACCEL_*, PREFECT_*) and pytest's variables are read at run time, not as libraries are imported.
# PYTHONPATH too, here: a Prefect worker gives each flow run a folder of its own on it, and a child
# puts its caller's entries in front of the server's sys.path (server.py). A server that imports Prefect
# (flows/warm_engine) reads Prefect's settings as it imports it: only its per-run variables (PREFECT__*,
# the flow run's id, its control channel) stay out of that server's key.
_RUN_TIME_ENV = ("ACCEL_", "PREFECT_", "PYTEST_", "PYTHONPATH")
_RUN_TIME_ENV_WITH_PREFECT = ("ACCEL_", "PREFECT__", "PYTEST_", "PYTHONPATH")
START_TIMEOUT_S = 600.0  # a server's imports, on a slow, busy machine
SHARED_IDLE_EXIT_S = 900.0
PID = struct.Struct("q")
ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # every isolated process's


def read_exact(fd: int, size: int, timeout_s: float | None) -> bytes:
    data = b""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while len(data) < size:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the fork server closed the status pipe")
        data += chunk
    return data


class ChildExit:
    """A server's child: its pid, and its exit status, which the server writes to a pipe when it reaps it.

    Should the server die first, the status is lost: the child is then waited for until it is gone, and
    its status is None (said so, never guessed).
    """

    def __init__(self, pid: int, status_r: int) -> None:
        self.pid = pid
        self._status_r: int | None = status_r

    def __call__(self, timeout_s: float | None) -> int | None:
        if self._status_r is not None:
            try:
                (code,) = PID.unpack(read_exact(self._status_r, PID.size, timeout_s))  # TimeoutError: running
            except EOFError:
                code = None
            os.close(self._status_r)
            self._status_r = None
            if code is not None:
                return code
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while _running(self.pid):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.02)
        return None


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class ServerGone(ConnectionError):
    """The server went away (killed, or a shared one that exited idle): the caller asks for another."""


class ForkServer:
    """A connection to a warm parent: a process that imported `preload` and forks a child per request."""

    def __init__(self, preload: tuple[str, ...], sock: socket.socket, process: subprocess.Popen | None) -> None:
        self.preload = preload
        self._sock = sock
        self.process = process  # None for a shared server: it is not ours to stop
        self._lock = threading.Lock()  # one request on the socket at a time
        self._ready_lock = threading.Lock()  # one reader of the `ready` message (a prewarm thread, or a request)
        self.ready: dict[str, Any] | None = None
        self.gone = False

    @classmethod
    def own(cls, preload: tuple[str, ...], env: dict[str, str]) -> ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "accel.tasks.isolated.server", "--socket-fd", str(theirs.fileno()), *preload],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C at a terminal reaches the caller, which stops this
            )
        return cls(preload, ours, process)

    def await_ready(self) -> dict[str, Any]:
        """The server's `ready` message (what it imported, what failed); waits while it imports."""
        with self._ready_lock:
            return self._read_ready()

    def _read_ready(self) -> dict[str, Any]:
        if self.ready is None:
            self._sock.settimeout(START_TIMEOUT_S)
            try:
                message = self._sock.recv(1 << 16)
            except OSError as err:
                raise ServerGone(f"the fork server went away: {err}") from err
            finally:
                self._sock.settimeout(None)
            if not message:
                self.gone = True
                raise ServerGone(f"the fork server exited while importing {', '.join(self.preload)}")
            self.ready = json.loads(message)
        return self.ready

    def alive(self) -> bool:
        return not self.gone and (self.process is None or self.process.poll() is None)

    def start(self, entry: str, argv: list[str], reports_w: int, log_fd: int, env: dict[str, str]) -> ChildExit:
        """Fork a child running `entry` with `env`; ServerGone if the server is no longer there."""
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                self.await_ready()
                request = {"entry": entry, "argv": argv, "env": env, "cwd": os.getcwd()}
                try:
                    socket.send_fds(self._sock, [json.dumps(request).encode()], [reports_w, log_fd, status_w])
                except OSError as err:
                    self.gone = True
                    raise ServerGone(f"the fork server went away: {err}") from err
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        try:
            (pid,) = PID.unpack(read_exact(status_r, PID.size, 60.0))
        except EOFError as err:  # it died before forking: the status pipe closed unwritten
            os.close(status_r)
            self.gone = True
            raise ServerGone("the fork server went away before forking") from err
        except BaseException:
            os.close(status_r)
            raise
        return ChildExit(pid, status_r)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()  # an own server sees EOF, kills what it still runs and exits
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def import_env(env: dict[str, str], preload: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """The variables a server with `preload` reads as it imports: a caller whose values differ needs another."""
    imports_prefect = any(name == "prefect" or name.startswith("prefect.") for name in preload)
    run_time = _RUN_TIME_ENV_WITH_PREFECT if imports_prefect else _RUN_TIME_ENV
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(run_time)))


def _code_version() -> str:
    """The newest modification time of the accel modules a server preloads (tasks, flows, and the hardware
    and storage they import): a shared server must not outlive an edit of them. Found without importing
    them (flows/warm_engine's launcher stays light)."""
    folders = [
        Path(folder)
        for package in ("accel.tasks", "accel.flows", "accel.hardware", "accel.storage")
        for folder in (importlib.util.find_spec(package).submodule_search_locations or [])
    ]
    return str(max((f.stat().st_mtime_ns for folder in folders for f in folder.rglob("*.py")), default=0))


def shared_socket_path(preload: tuple[str, ...], env: dict[str, str]) -> Path:
    key = json.dumps([sys.executable, preload, import_env(env, preload), _code_version()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"accel-fork-{os.getuid()}" / f"{digest}.sock"


def _connect_shared(path: Path, preload: tuple[str, ...]) -> ForkServer | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return ForkServer(preload, sock, None)


def _shared(preload: tuple[str, ...], env: dict[str, str]) -> ForkServer:
    path = shared_socket_path(preload, env)
    if (server := _connect_shared(path, preload)) is not None:
        return server
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if path.parent.stat().st_uid != os.getuid() or path.parent.stat().st_mode & 0o077:
        raise PermissionError(f"{path.parent} must be this user's alone (mode 0700) to hold fork server sockets")
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one caller starts it; the others wait here, then connect
        if (server := _connect_shared(path, preload)) is not None:
            return server
        path.unlink(missing_ok=True)  # a dead server's socket file
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accel.tasks.isolated.server",
                "--listen",
                str(path),
                "--idle-exit",
                str(SHARED_IDLE_EXIT_S),
                *preload,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # detached: it outlives this process, for the next flow run
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if (server := _connect_shared(path, preload)) is not None:
                return server
            if process.poll() is not None:
                raise ServerGone(f"the shared fork server exited with code {process.returncode} while starting")
            time.sleep(0.05)
        process.kill()
        raise ServerGone(f"the shared fork server did not listen within {START_TIMEOUT_S:.0f} s")


_servers: dict[tuple[Any, ...], ForkServer] = {}
_servers_lock = threading.Lock()


def child_env(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server and its children: this process's, ENV over it, and `extra_env` over both."""
    return {**os.environ, **ENV, **(extra_env or {})}


def shared_enabled() -> bool:
    return os.environ.get("ACCEL_SHARED_FORK_SERVERS", "").strip().lower() in ("1", "true", "yes", "on")


def fork_server(preload: Iterable[str], env: dict[str, str] | None = None, *, fresh: bool = False) -> ForkServer:
    """The server for this preload set and import-time environment; connected or started if there is none
    (or `fresh`: the one before went away)."""
    env = child_env() if env is None else env
    preload = tuple(preload)
    shared = shared_enabled()
    key = (preload, import_env(env, preload), shared)
    with _servers_lock:
        server = _servers.get(key)
        if fresh or server is None or not server.alive():
            if server is not None:
                server.close()
            server = _servers[key] = _shared(preload, env) if shared else ForkServer.own(preload, env)
        return server


def prewarm(preload: Iterable[str]) -> None:
    """Have the server for `preload` start now, in the background, so the first child starts warm."""
    from accel.tasks.isolated.process import warm_enabled

    if warm_enabled():
        threading.Thread(target=_prewarm, args=(tuple(preload),), name="accel-prewarm", daemon=True).start()


def _prewarm(preload: tuple[str, ...]) -> None:
    with contextlib.suppress(Exception):  # a server that cannot start fails the first real request, with why
        fork_server(preload).await_ready()


@atexit.register
def stop_servers() -> None:
    """Stop this process's own servers, and leave the shared ones (their connections close)."""
    with _servers_lock:
        for server in _servers.values():
            server.close()
        _servers.clear()
