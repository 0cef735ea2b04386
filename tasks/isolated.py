"""Isolated processes that start warm: one fresh, crash-contained process per check run, benchmark point
and FLOP count, forked from a server that has already imported the heavy libraries.

Importing torch and transformers costs seconds, and every check run and benchmark point used to pay it
in a fresh interpreter. A fork server (`python -m accel.tasks.isolated`, one per parent process and
preload set, started on first use) imports them once and then forks a child per request, which runs
`module:function(argv + ["--report-fd", N])` and reports JSON lines on that descriptor.

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

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# Environment read by libraries as they are imported: a server serves only callers whose environment
# matches the one it imported under. Ours (ACCEL_*, PREFECT_*) and pytest's are read at run time.
_RUN_TIME_ENV = ("ACCEL_", "PREFECT_", "PYTEST_")
_SERVER_START_TIMEOUT_S = 600.0
_PID = struct.Struct("q")
ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def warm_enabled() -> bool:
    return os.environ.get("ACCEL_WARM_PROCESSES", "1").strip().lower() not in ("0", "false", "no", "off")


def describe_exit(code: int | None) -> str:
    """An exit status in words: `exited with code 3`, `was killed by SIGKILL`."""
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def peak_rss_of(pid: int) -> int | None:
    """The kernel's high-water mark of a live process's resident set (VmHWM), in bytes; None if unknown.

    Exact (no sample can miss a spike) and free to read, where sampling from outside every few
    milliseconds interrupts the measured threads: a 5 ms sampler slowed MiniLM calls on 2 cores by
    about 5%. (wait4's ru_maxrss is no substitute: it carries the forking parent's peak.)
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Isolated:
    """One isolated process: JSON reports from its pipe, its exit status, the tail of its output."""

    def __init__(self, pid: int, reports: int, log: Path, exit_status: Callable[[float | None], int]) -> None:
        self.pid = pid
        self._reports = reports
        self._log = log
        self._exit_status = exit_status  # (timeout_s) -> its code, or TimeoutError while it runs
        self.timed_out = False
        self.returncode: int | None = None

    def events(self, first_timeout_s: float, next_timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Each JSON report as it comes; ends when the process closes its end (done or dead).

        The first report must come within `first_timeout_s`, each later one within `next_timeout_s` of
        the one before (default: the same bound). Past a bound it ends with `timed_out` set, the process
        still alive: the caller reads what it needs from it (its peak RSS) and kills it. Blocks in poll:
        the caller takes no CPU from the measured process.
        """
        poll = select.poll()
        poll.register(self._reports, select.POLLIN | select.POLLHUP | select.POLLERR)
        buffer = b""
        deadline = time.monotonic() + first_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                return
            if not poll.poll(math.ceil(left * 1000)):
                continue
            chunk = os.read(self._reports, 1 << 20)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
                    deadline = time.monotonic() + (first_timeout_s if next_timeout_s is None else next_timeout_s)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def wait(self, grace_s: float | None = None) -> int:
        """Its exit status (negative: killed by that signal); past `grace_s` it is killed first."""
        if self.returncode is None:
            try:
                self.returncode = self._exit_status(grace_s)
            except TimeoutError:
                self.kill()
                self.returncode = self._exit_status(None)
        return self.returncode

    def tail(self, lines: int = 12) -> list[str]:
        try:
            return self._log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return []

    def close(self) -> None:
        if self.returncode is None:
            self.kill()
            self.wait()
        with contextlib.suppress(OSError):
            os.close(self._reports)
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(fd: int, size: int, timeout_s: float | None) -> bytes:
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


class _ServerChildExit:
    """The exit status of a fork server's child, which the server writes to a pipe when it reaps it."""

    def __init__(self, status_r: int) -> None:
        self._status_r = status_r

    def __call__(self, timeout_s: float | None) -> int:
        (code,) = _PID.unpack(_read_exact(self._status_r, _PID.size, timeout_s))  # TimeoutError: still running
        os.close(self._status_r)
        return code


class ForkServer:
    """A warm parent: a process that imported `preload` and forks a child per request."""

    def __init__(self, preload: tuple[str, ...]) -> None:
        self.preload = preload
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self.ready: dict[str, Any] | None = None
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "accel.tasks.isolated", "--socket-fd", str(theirs.fileno()), *preload],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={**os.environ, **ENV},
                start_new_session=True,  # Ctrl-C at a terminal reaches the caller, which stops this
            )

    def _await_ready(self) -> dict[str, Any]:
        if self.ready is None:
            self._sock.settimeout(_SERVER_START_TIMEOUT_S)
            try:
                message = self._sock.recv(1 << 16)
            finally:
                self._sock.settimeout(None)
            if not message:
                raise RuntimeError(f"the fork server exited while importing {', '.join(self.preload)}")
            self.ready = json.loads(message)
        return self.ready

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, entry: str, argv: list[str], reports_w: int, log_fd: int) -> tuple[int, int]:
        """Fork a child running `entry`; (its pid, the read end its exit status arrives on)."""
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                self._await_ready()
                request = {"entry": entry, "argv": argv, "env": {**os.environ, **ENV}, "cwd": os.getcwd()}
                socket.send_fds(self._sock, [json.dumps(request).encode()], [reports_w, log_fd, status_w])
        finally:
            os.close(status_w)
        try:
            (pid,) = _PID.unpack(_read_exact(status_r, _PID.size, 60.0))
        except BaseException:
            os.close(status_r)
            raise
        return pid, status_r

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()  # the server sees EOF, kills what it still runs and exits
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_servers: dict[tuple[tuple[str, ...], int], ForkServer] = {}
_servers_lock = threading.Lock()


def _import_env_key() -> int:
    return hash(tuple(sorted((k, v) for k, v in os.environ.items() if not k.startswith(_RUN_TIME_ENV))))


def fork_server(preload: Iterable[str]) -> ForkServer:
    """The running server for this preload set and import-time environment, started if there is none."""
    key = (tuple(preload), _import_env_key())
    with _servers_lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            if server is not None:
                server.close()
            server = _servers[key] = ForkServer(key[0])
        return server


def prewarm(preload: Iterable[str]) -> None:
    """Start the server for `preload` now (it imports in the background), so the first child starts warm."""
    if warm_enabled():
        fork_server(preload)


@atexit.register
def stop_servers() -> None:
    with _servers_lock:
        for server in _servers.values():
            server.close()
        _servers.clear()


def start(entry: str, argv: list[str], preload: Iterable[str] = ()) -> Isolated:
    """Start `entry` ("package.module:function", called with argv + ["--report-fd", N]) isolated.

    Warm (forked from the server for `preload`) unless ACCEL_WARM_PROCESSES=0; cold, it is
    `python -m package.module argv... --report-fd N`, so each entry must be such a module's main.
    """
    reports_r, reports_w = os.pipe()
    log_fd, log_name = tempfile.mkstemp(prefix="accel-isolated-", suffix=".log")
    try:
        if warm_enabled():
            pid, status_r = fork_server(preload).start(entry, argv, reports_w, log_fd)
            exit_status = _ServerChildExit(status_r)

        else:
            module = entry.partition(":")[0]
            process = subprocess.Popen(
                [sys.executable, "-m", module, *argv, "--report-fd", str(reports_w)],
                pass_fds=(reports_w,),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env={**os.environ, **ENV},
                start_new_session=True,
            )
            pid = process.pid

            def exit_status(timeout_s: float | None) -> int:
                try:
                    return process.wait(timeout_s)
                except subprocess.TimeoutExpired as err:
                    raise TimeoutError from err

    except BaseException:
        os.close(reports_r)
        Path(log_name).unlink(missing_ok=True)
        raise
    finally:
        os.close(reports_w)
        os.close(log_fd)
    return Isolated(pid, reports_r, Path(log_name), exit_status)


# --- the server side -----------------------------------------------------------------------------------


def _run_child(request: dict[str, Any], reports_w: int, log_fd: int) -> None:
    """In the forked child: become a fresh process of its own, run the entry, exit. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        atexit._clear()  # the server's exit handlers are not this process's
        _reseed()
        module_name, _, function = request["entry"].partition(":")
        sys.argv = [module_name, *request["argv"]]
        main = getattr(importlib.import_module(module_name), function)
        result = main([*request["argv"], "--report-fd", str(reports_w)])
        code = result if isinstance(result, int) else 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reseed() -> None:
    """Fresh random state, as a fresh process has (the server's would otherwise repeat in every child)."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _serve(sock: socket.socket, preload: list[str]) -> None:
    failed: dict[str, str] = {}
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException as err:  # the child that needs it fails at its own import, with the reason
            failed[name] = f"{type(err).__name__}: {err}"[:500]
    import gc

    gc.collect()
    gc.freeze()  # the preloaded objects stay out of the children's collections: their pages stay shared
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    sock.send(json.dumps({"ready": True, "failed": failed, "threads": threads, "pid": os.getpid()}).encode())

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}  # pid -> the write end of its status pipe

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status_w = children.pop(pid, None)
            if status_w is not None:
                with contextlib.suppress(OSError):
                    os.write(status_w, _PID.pack(os.waitstatus_to_exitcode(status)))
                os.close(status_w)

    while True:
        try:
            readable = select.select([sock, wake_r], [], [])[0]
        except InterruptedError:
            continue
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            reap()
        if sock not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 8)
        except InterruptedError:
            continue
        if not message:
            break  # the caller went away
        reports_w, log_fd, status_w = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            os.close(wake_r)
            os.close(wake_w)
            os.close(status_w)
            for other in children.values():
                os.close(other)
            _run_child(json.loads(message), reports_w, log_fd)
        os.close(reports_w)
        os.close(log_fd)
        os.write(status_w, _PID.pack(pid))
        children[pid] = status_w
        reap()
    for pid in children:  # nobody waits for them any more
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.isolated", description="the fork server (internal)")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("preload", nargs="*")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # its caller stops it by closing the socket
    _serve(socket.socket(fileno=args.socket_fd), args.preload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
