"""An isolated process as its caller sees it: its reports, its exit status, its output; started warm or cold."""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from accel.tasks.isolated.servers import ServerGone, child_env, fork_server

INTERRUPT_GRACE_S = 30.0  # for an interrupted process to end cleanly before it is killed
_live: weakref.WeakSet[Isolated] = weakref.WeakSet()  # what this process started and has not closed
_interrupted = threading.Event()


def interrupt_all() -> None:
    """This process is being interrupted (Ctrl-C): every isolated process it started is killed now and none
    starts after (`start` raises KeyboardInterrupt), so a thread that waits on one (a chain beside the
    interrupted main thread of its pipeline) ends at once instead of running its work to the end."""
    _interrupted.set()
    for process in list(_live):
        process.kill()


def interrupted() -> bool:
    return _interrupted.is_set()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt once `interrupt_all` was called in this process (for threads that wait otherwise)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt("this process was interrupted")


def warm_enabled() -> bool:
    return os.environ.get("ACCEL_WARM_PROCESSES", "1").strip().lower() not in ("0", "false", "no", "off")


def describe_exit(code: int | None) -> str:
    """An exit status in words: `exited with code 3`, `was killed by SIGKILL`."""
    if code is None:
        return "ended with its exit status unknown (its fork server died first)"
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

    def __init__(self, pid: int, reports: int, log: Path, exit_status: Callable[[float | None], int | None]) -> None:
        self.pid = pid
        self._reports = reports
        self._log = log
        self._exit_status = exit_status  # (timeout_s) -> its code, or TimeoutError while it runs
        self.timed_out = False
        self.returncode: int | None = None  # None also once it ended: its status was lost
        self._ended = False
        _live.add(self)

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

    def interrupt(self, grace_s: float = INTERRUPT_GRACE_S) -> int | None:
        """SIGINT to it and its children (a KeyboardInterrupt there: a flow records how it ended), its exit
        status once it has ended; past `grace_s` it is killed."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGINT)
        return self.wait(grace_s)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def wait(self, grace_s: float | None = None) -> int | None:
        """Its exit status (negative: killed by that signal; None: lost with its fork server); past
        `grace_s` it is killed first."""
        if not self._ended:
            try:
                self.returncode = self._exit_status(grace_s)
            except TimeoutError:
                self.kill()
                self.returncode = self._exit_status(None)
            self._ended = True
        return self.returncode

    def tail(self, lines: int = 12) -> list[str]:
        try:
            return self._log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return []

    def close(self) -> None:
        _live.discard(self)
        if not self._ended:
            self.kill()
            self.wait()
        with contextlib.suppress(OSError):
            os.close(self._reports)
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start(
    entry: str, argv: list[str], preload: Iterable[str] = (), extra_env: dict[str, str] | None = None
) -> Isolated:
    """Start `entry` ("package.module:function", called with argv + ["--report-fd", N]) isolated, with
    this process's environment and `extra_env` over it.

    Warm (forked from the server for `preload`) unless ACCEL_WARM_PROCESSES=0; cold, it is
    `python -m package.module argv... --report-fd N`, so each entry must be such a module's main.
    """
    raise_if_interrupted()
    reports_r, reports_w = os.pipe()
    log_fd, log_name = tempfile.mkstemp(prefix="accel-isolated-", suffix=".log")
    env = child_env(extra_env)
    try:
        if warm_enabled():
            try:
                exit_status = fork_server(preload, env).start(entry, argv, reports_w, log_fd, env)
            except ServerGone:  # killed, or a shared one that exited idle: once more, on a new one
                exit_status = fork_server(preload, env, fresh=True).start(entry, argv, reports_w, log_fd, env)
            pid = exit_status.pid
        else:
            module = entry.partition(":")[0]
            process = subprocess.Popen(
                [sys.executable, "-m", module, *argv, "--report-fd", str(reports_w)],
                pass_fds=(reports_w,),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=env,
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
