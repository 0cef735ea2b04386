"""One benchmark per device at a time: two on one CPU at once corrupt both figures.

The guard is a file lock in ACCEL_HOME: it holds across every process on this machine, and the
kernel frees it the moment its holder dies, however it dies (a SIGKILLed benchmark frees the device
at once). When a Prefect server is configured, the holder also takes a slot of a Prefect global
concurrency limit named after the device, so the Prefect UI shows who holds the device. That slot
is only a display: Prefect's leases outlive a killed holder by minutes (60 s at the least, 300 s by
default), so whoever holds the file lock clears a slot a dead holder left behind instead of waiting
for its lease to expire.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accel.settings import get_settings

LEASE_S = 60.0  # the shortest lease Prefect grants; renewed while held
SAY_EVERY_S = 10.0  # while waiting for the device, say who holds it this often
_log = logging.getLogger("accel.device")


def limit_name(hardware: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", platform.node()) or "host"
    return f"accel-benchmark-{hardware}-{host}"


def lock_path(hardware: str) -> Path:
    return get_settings().home / "locks" / f"{limit_name(hardware)}.lock"


def holder(hardware: str) -> dict[str, Any] | None:
    """Who holds the device now (pid, flow run, since), or None when it is free."""
    path = lock_path(hardware)
    if not path.is_file():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or {"pid": None}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text().strip()
        return json.loads(text) if text.startswith("{") else {"pid": int(text)}
    except (OSError, ValueError):
        return None


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow or task run
        return _log


def _prefect_display_slot(name: str, stack: ExitStack) -> None:
    """Take the Prefect slot that shows this holder in the UI, clearing one a dead holder left."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.concurrency.sync import concurrency

    try:
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, 1)
            limit = client.read_global_concurrency_limit_by_name(name)
            if limit.active_slots:
                # We hold the file lock, so nobody alive holds the device: the slot is a dead holder's.
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))
                _logger().warning("freed the Prefect slot %s left by a benchmark that died", name)
        stack.enter_context(concurrency(name, occupy=1, timeout_seconds=30, lease_duration=LEASE_S, strict=True))
    except Exception as err:  # the UI misses one holder; the file lock still guards the device
        _logger().warning("could not show the device slot %s in Prefect: %s: %s", name, type(err).__name__, err)


def _this_holder() -> dict[str, Any]:
    who: dict[str, Any] = {"pid": os.getpid(), "since": datetime.now(UTC).isoformat()}
    try:
        from prefect.runtime import flow_run

        who["flow_run_id"] = str(flow_run.id) if flow_run.id else None
        who["flow_run_name"] = flow_run.name if flow_run.id else None
    except Exception:
        pass
    return who


@contextmanager
def device_slot(hardware: str, timeout_s: float | None = None) -> Iterator[float]:
    """Hold the device for one benchmark; yields the seconds spent waiting for it.

    Raises TimeoutError when another benchmark keeps it for longer than `timeout_s`.
    """
    name = limit_name(hardware)
    path = lock_path(hardware)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(path, "a+") as handle:
        deadline = None if timeout_s is None else started + timeout_s
        said = started
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise TimeoutError(
                        f"{hardware} stayed busy with another benchmark for {timeout_s:.0f} s "
                        f"(held by {_read_holder(path)})"
                    ) from None
                if now - said >= SAY_EVERY_S:
                    said = now
                    _logger().info(
                        "waiting %.0f s for %s: another benchmark holds it (%s)",
                        now - started,
                        hardware,
                        _read_holder(path),
                    )
                time.sleep(0.05)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_this_holder()) + "\n")
            handle.flush()
            waited = time.monotonic() - started
            with ExitStack() as stack:
                _prefect_display_slot(name, stack)
                yield waited
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
