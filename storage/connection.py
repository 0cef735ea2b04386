"""DuckDB connections that wait out other processes' locks: short-lived ones, or one held open.

DuckDB lets one process hold a database file at a time (in either mode). By default every access
opens, works and closes, retrying with jittered backoff while another process holds the lock
(`run_transaction`). A process that is the file's one user (the API under `accel up`) can instead
hold one connection for its lifetime (`HeldConnection`): each access runs on a cursor of it, which
saves opening the file (about half the cost of a small query) and keeps DuckDB's caches warm, at
the price of locking every other process out until it closes.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
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


def _connect(path: Path, deadline: float) -> duckdb.DuckDBPyConnection:
    delay = 0.005
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


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
    delay = 0.005
    while True:
        try:
            return attempt(deadline)
        except duckdb.Error as err:
            if not (_is_lock_error(err) or _is_conflict(err)):
                raise
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"results store {path} stayed busy for more than {timeout_s:.0f} s "
                    "(DuckDB lets one process use a file at a time; raise ACCEL_DB_TIMEOUT_S to wait "
                    f"longer): {err}"
                ) from err
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def run_transaction(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T], timeout_s: float) -> T:
    """Run `work(con)` in one transaction on a fresh connection: all of it lands, or none of it.

    Lock and write-conflict errors are retried until `timeout_s`; anything else propagates at once.
    """

    def attempt(deadline: float) -> T:
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
        self._con: duckdb.DuckDBPyConnection | None = _retrying(path, timeout_s, lambda d: _connect(path, d))

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
                con.close()
        finally:
            if locked:
                self._write.release()
