"""DuckDB connections that wait out other processes' locks: short-lived ones, or one held open.

DuckDB lets one process hold a database file at a time (in either mode). By default every access
opens, works and closes, retrying with jittered backoff while another process holds the lock
(`run_transaction`). A process that is the file's one user (the API under `accel up`) can instead
hold one connection for its lifetime (`HeldConnection`): each access runs on a cursor of it, which
saves opening the file (about half the cost of a small query) and keeps DuckDB's caches warm, at
the price of locking every other process out until it closes.

Either way a process takes its turn at the file first (`file_turn`): an exclusive `flock` on a file
beside it, held until its DuckDB connection has closed. DuckDB's own lock alone let a process, under
load, open the file while the last holder was still finishing with it: it then read a block past the
file's end ("Could not read enough bytes from file") and its write was lost (about one run in seven of
four processes writing at once, on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")


class StoreBusyError(RuntimeError):
    """The results store stayed locked (or conflicted) past the timeout."""


class StoreClosedError(StoreBusyError):
    """The store's held connection was closed (the process is shutting down): nothing was read or written."""


def _is_lock_error(err: Exception) -> bool:
    return isinstance(err, duckdb.IOException) and "lock" in str(err).lower()


def _is_conflict(err: Exception) -> bool:
    # Two connections of one process writing the same rows at once: DuckDB aborts one of them.
    return isinstance(err, duckdb.TransactionException) and "conflict" in str(err).lower()


class _Turn:
    """A process's turn at one file: the flock's descriptor, and how many of its users hold it now."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.fd: int | None = None
        self.users = 0


_turns: dict[Path, _Turn] = {}
_turns_lock = threading.Lock()


def _forget_turns_in_child() -> None:
    """A forked child holds no turn: its copies of the parent's descriptors are closed (the parent's flock
    stays: it is released only when every descriptor of it is closed), and it takes turns of its own."""
    global _turns, _turns_lock
    for turn in _turns.values():
        if turn.fd is not None:
            with contextlib.suppress(OSError):
                os.close(turn.fd)
    _turns, _turns_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_turns_in_child)


def lock_file(path: Path) -> Path:
    """The file whose flock is a process's turn at the results file `path`."""
    return path.with_name(path.name + ".lock")


def _busy(path: Path, timeout_s: float, why: str) -> StoreBusyError:
    return StoreBusyError(
        f"results store {path} stayed busy for more than {timeout_s:.0f} s "
        f"(DuckDB lets one process use a file at a time; raise ACCEL_DB_TIMEOUT_S to wait longer): {why}"
    )


@contextlib.contextmanager
def file_turn(path: Path, deadline: float, timeout_s: float) -> Iterator[None]:
    """This process's turn at the results file `path`, waited for until `deadline` (time.monotonic()).

    Across processes it is exclusive: an flock on `lock_file(path)`, which no other descriptor's close can
    drop early (unlike the fcntl lock DuckDB takes) and which the kernel frees when its holder dies. Within a
    process it is shared, as the DuckDB database is: the threads of one process (a held connection and its
    cursors, or connections of their own) use one instance, and DuckDB orders their transactions itself.
    """
    path = Path(os.path.realpath(path))  # one turn per file, however its path is spelled
    with _turns_lock:
        turn = _turns.setdefault(path, _Turn())
    if not turn.guard.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise _busy(path, timeout_s, "another thread of this process was still waiting for its turn")
    try:
        if turn.users == 0:
            turn.fd = _flock(path, deadline, timeout_s)
        turn.users += 1
    finally:
        turn.guard.release()
    try:
        yield
    finally:
        with turn.guard:
            turn.users -= 1
            if turn.users == 0 and turn.fd is not None:
                os.close(turn.fd)  # the flock goes with it
                turn.fd = None


def _attempts() -> Iterator[None]:
    """Each attempt of a wait for the file: the first at once, each next after a backoff of 5 ms doubling to
    200 ms, each pause scaled by a random 0.5-1.5 so that processes waiting on one file do not retry in step.
    The caller stops when an attempt succeeds or its deadline has passed."""
    delay = 0.005
    while True:
        yield
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def _flock(path: Path, deadline: float, timeout_s: float) -> int:
    fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    for _ in _attempts():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise _busy(path, timeout_s, f"another process held its turn ({lock_file(path).name})") from None
    raise AssertionError("unreachable: _attempts() never ends")


def _connect(path: Path, deadline: float) -> duckdb.DuckDBPyConnection:
    for _ in _attempts():
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                raise
    raise AssertionError("unreachable: _attempts() never ends")


def _transact(con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work(con)` between BEGIN and COMMIT; ROLLBACK (and the error) when any of it fails."""
    con.execute("BEGIN TRANSACTION")
    try:
        result = work(con)
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT has rolled back already ("no transaction is active"): its own error is the one to raise.
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise
    return result


def _retrying(path: Path, timeout_s: float, attempt: Callable[[float], T]) -> T:
    """`attempt(deadline)` again, with jittered backoff, while it fails on a lock or a write conflict."""
    deadline = time.monotonic() + timeout_s
    for _ in _attempts():
        try:
            return attempt(deadline)
        except duckdb.Error as err:
            if not (_is_lock_error(err) or _is_conflict(err)):
                raise
            if time.monotonic() > deadline:
                raise _busy(path, timeout_s, str(err)) from err
    raise AssertionError("unreachable: _attempts() never ends")


def run_transaction(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T], timeout_s: float) -> T:
    """Run `work(con)` in one transaction on a fresh connection: all of it lands, or none of it.

    Lock and write-conflict errors are retried until `timeout_s`; anything else propagates at once.
    """

    def attempt(deadline: float) -> T:
        with file_turn(path, deadline, timeout_s):
            con = _connect(path, deadline)
            try:
                return _transact(con, work)
            finally:
                con.close()

    return _retrying(path, timeout_s, attempt)


class HeldConnection:
    """One connection to `path`, open until `close()`; `run` gives each call a cursor of it.

    Cursors are separate DuckDB connections to the same database instance, safe to use from any thread:
    reads run side by side, each in its own transaction (one consistent snapshot per call). Writes take a
    lock first, so this process's writes never conflict with each other. Other processes cannot open the
    file meanwhile (other connections in this process share the instance and can).
    """

    def __init__(self, path: Path, timeout_s: float):
        self.path = path
        self._write = threading.Lock()
        self._turn = contextlib.ExitStack()  # this process's turn at the file, held until close()
        self._turn.enter_context(file_turn(path, time.monotonic() + timeout_s, timeout_s))
        try:
            self._con: duckdb.DuckDBPyConnection | None = _retrying(path, timeout_s, lambda d: _connect(path, d))
        except BaseException:
            self._turn.close()
            raise

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T], timeout_s: float, write: bool = False) -> T:
        """`work(cursor)` in one transaction, as `run_transaction` runs it; writes one at a time."""

        def attempt(deadline: float) -> T:
            cursor = self._cursor()
            try:
                if not write:
                    return _transact(cursor, work)
                if not self._write.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise StoreBusyError(f"results store {self.path}: another write took more than {timeout_s:.0f} s")
                try:
                    return _transact(cursor, work)
                finally:
                    self._write.release()
            finally:
                cursor.close()

        return _retrying(self.path, timeout_s, attempt)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        con = self._con
        if con is not None:
            try:
                return con.cursor()
            except duckdb.ConnectionException:
                pass  # closed by another thread in between
        raise StoreClosedError(f"results store {self.path} is closed")

    def close(self, timeout_s: float = 60.0) -> None:
        """Let a write in progress finish (up to `timeout_s`), then release the file. Closing twice is harmless."""
        locked = self._write.acquire(timeout=timeout_s)
        try:
            con, self._con = self._con, None
            if con is not None:
                try:
                    con.close()
                finally:
                    self._turn.close()
        finally:
            if locked:
                self._write.release()
