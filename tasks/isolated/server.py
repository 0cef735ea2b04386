"""`python -m accel.tasks.isolated.server`: the fork server (internal; servers.py starts it).

It imports its preload set, says `ready` (with what failed to import: the child that needs it then
fails at its own import, with the reason), then forks one child per request and writes each child's
pid, and later its exit status, to the status pipe that came with the request. It runs no model code
and forks from its only Python thread.

Requests come on the socket its owner holds (--socket-fd; the server exits when that closes) and, for a
shared server, on connections to a listening socket (--listen; it exits after --idle-exit seconds with
no connection and no child). A connection that closes takes its running children with it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

PID = struct.Struct("q")


def _run_child(request: dict[str, Any], reports_w: int, log_fd: int) -> None:
    """In the forked child: become a fresh process of its own, run the entry, exit. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        ahead = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
        sys.path[:0] = [entry for entry in ahead if entry not in sys.path]
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


def _preload(names: list[str]) -> dict[str, Any]:
    failed: dict[str, str] = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as err:
            failed[name] = f"{type(err).__name__}: {err}"[:500]
    gc.collect()
    gc.freeze()  # the preloaded objects stay out of the children's collections: their pages stay shared
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    return {"ready": True, "failed": failed, "threads": threads, "pid": os.getpid()}


def _listen(path: Path) -> tuple[socket.socket, int]:
    """A listening socket at `path`, appearing there only once it listens (clients wait for the file),
    and the inode of that file (so the server removes it at exit only if no newer server replaced it)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(staging))
    os.chmod(staging, 0o600)
    listener.listen(64)
    os.replace(staging, path)
    return listener, os.stat(path).st_ino


def _peer_is_us(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


class _Server:
    def __init__(self, ready: dict[str, Any], owner: socket.socket | None, listener: socket.socket | None) -> None:
        self.ready = json.dumps(ready).encode()
        self.owner = owner
        self.listener = listener
        self.conns: set[socket.socket] = {owner} if owner else set()
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pid -> (status pipe, its connection)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (found := self.children.pop(pid, None)) is not None:
                status_w = found[0]
                with contextlib.suppress(OSError):
                    os.write(status_w, PID.pack(os.waitstatus_to_exitcode(status)))
                os.close(status_w)

    def drop(self, conn: socket.socket) -> None:
        """A connection closed: its caller is gone, so nobody waits for its children any more."""
        self.conns.discard(conn)
        conn.close()
        for pid, (_, owner) in list(self.children.items()):
            if owner is conn:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def fork(self, conn: socket.socket, message: bytes, fds: list[int]) -> None:
        reports_w, log_fd, status_w = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for other in (*self.conns, self.listener):
                if other is not None:
                    other.close()
            os.close(self.wake_r)
            os.close(self._wake_w)
            os.close(status_w)
            for other_status, _ in self.children.values():
                os.close(other_status)
            _run_child(json.loads(message), reports_w, log_fd)
        os.close(reports_w)
        os.close(log_fd)
        os.write(status_w, PID.pack(pid))
        self.children[pid] = (status_w, conn)

    def serve(self, idle_exit_s: float | None) -> None:
        idle_since = time.monotonic()
        while self.owner is None or self.owner in self.conns:
            watched = [*self.conns, self.wake_r, *([self.listener] if self.listener else [])]
            timeout = None
            if idle_exit_s is not None and not self.conns and not self.children:
                timeout = max(0.0, idle_since + idle_exit_s - time.monotonic())
                if timeout == 0:
                    return
            try:
                readable = select.select(watched, [], [], timeout)[0]
            except InterruptedError:
                continue
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
                self.reap()
            if self.listener is not None and self.listener in readable:
                conn, _ = self.listener.accept()
                if _peer_is_us(conn):
                    conn.send(self.ready)
                    self.conns.add(conn)
                else:
                    conn.close()
            for conn in [c for c in readable if isinstance(c, socket.socket) and c in self.conns]:
                try:
                    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 8)
                except InterruptedError:
                    continue
                except OSError:
                    message, fds = b"", []
                if not message:
                    self.drop(conn)
                elif len(fds) == 3:
                    self.fork(conn, message, fds)
                else:
                    for fd in fds:
                        os.close(fd)
            self.reap()
            if self.conns or self.children:
                idle_since = time.monotonic()

    def stop(self) -> None:
        for conn in list(self.conns):
            self.drop(conn)
        deadline = time.monotonic() + 10
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accel.tasks.isolated.server", description="the fork server (internal)")
    parser.add_argument("--socket-fd", type=int, help="the owner's socket: the server exits when it closes")
    parser.add_argument("--listen", type=Path, help="a Unix socket path to accept connections on (shared server)")
    parser.add_argument("--idle-exit", type=float, help="with --listen: exit after this many idle seconds")
    parser.add_argument("preload", nargs="*")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # its owner stops it by closing the socket
    owner = socket.socket(fileno=args.socket_fd) if args.socket_fd is not None else None
    ready = _preload(args.preload)
    if owner is not None:
        owner.send(json.dumps(ready).encode())
    listener, inode = _listen(args.listen) if args.listen else (None, None)
    server = _Server(ready, owner, listener)
    try:
        server.serve(args.idle_exit)
    finally:
        if args.listen is not None:
            with contextlib.suppress(OSError):
                if os.stat(args.listen).st_ino == inode:
                    args.listen.unlink()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
