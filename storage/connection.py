"""Short-lived DuckDB connections that wait out other processes' locks.

DuckDB lets one process hold a database file at a time (in either mode), so every access opens,
works and closes, retrying with jittered backoff while another process holds the lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")


class StoreBusyError(RuntimeError):
    """The results store stayed locked (or conflicted) past the timeout."""


def _is_lock_error(err: Exception) -> bool:
    return isinstance(err, duckdb.IOException) and "lock" in str(err).lower()


def _is_conflict(err: Exception) -> bool:
    # Two connections of one process writing the same rows at once: DuckDB aborts one of them.
    return isinstance(err, duckdb.TransactionException) and "conflict" in str(err).lower()


@contextmanager
def _open(path: Path, deadline: float) -> Iterator[duckdb.DuckDBPyConnection]:
    delay = 0.005
    while True:
        try:
            con = duckdb.connect(str(path))
            break
        except duckdb.Error as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)
    try:
        yield con
    finally:
        con.close()


def run_transaction(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T], timeout_s: float) -> T:
    """Run `work(con)` in one transaction on a fresh connection: all of it lands, or none of it.

    Lock and write-conflict errors are retried until `timeout_s`; anything else propagates at once.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            with _open(path, deadline) as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    result = work(con)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                return result
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
