"""One benchmark per device at a time: two on one CPU at once corrupt both figures.

Always a file lock in ACCEL_HOME (it holds across every process on this machine); and, when a
Prefect server is configured, also a Prefect global concurrency limit named after the device, so
the Prefect UI shows who holds the device and who waits.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from accel.settings import get_settings


def limit_name(hardware: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", platform.node()) or "host"
    return f"accel-benchmark-{hardware}-{host}"


def _prefect_limit(name: str, timeout_s: float | None):
    """Prefect's concurrency slot for `name`, a limit of 1 slot (created or reset to 1 here)."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return nullcontext()
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    return concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True)


@contextmanager
def device_slot(hardware: str, timeout_s: float | None = None) -> Iterator[float]:
    """Hold the device for one benchmark; yields the seconds spent waiting for it."""
    name = limit_name(hardware)
    path = get_settings().home / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(path, "a+") as handle:
        deadline = None if timeout_s is None else started + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{hardware} stayed busy with another benchmark for {timeout_s:.0f} s") from None
                time.sleep(0.05)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
            with _prefect_limit(name, remaining):
                yield time.monotonic() - started
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_path(hardware: str) -> Path:
    return get_settings().home / "locks" / f"{limit_name(hardware)}.lock"
