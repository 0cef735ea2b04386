"""The outbox: batches of records an HTTP results store could not send yet, kept in order on local disk.

One JSON line per batch (`RecordBatch`). Every access holds an exclusive `fcntl` lock on a file beside
it, so two processes (or two threads) never interleave lines or replay the same batch at once; a batch
the store refused for its content moves to `<name>.rejected.jsonl` with the reason, never silently dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from accel.storage.batch import RecordBatch


class Outbox:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.stem + ".rejected.jsonl")

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    @contextmanager
    def locked(self) -> Iterator[Outbox]:
        """Hold the outbox for this block: the `*_locked` methods are only called inside one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def lines_locked(self) -> list[str]:
        if not self.path.is_file():
            return []
        return [line for line in self.path.read_text().splitlines() if line.strip()]

    def append_locked(self, batch: RecordBatch) -> None:
        with open(self.path, "a") as out:
            out.write(batch.model_dump_json() + "\n")
            out.flush()
            os.fsync(out.fileno())

    def rewrite_locked(self, lines: list[str]) -> None:
        """Keep only `lines` (those still waiting), replacing the file in one rename."""
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as out:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def reject_locked(self, line: str, status: int | None, detail: str) -> None:
        entry = {"rejected_at": datetime.now(UTC).isoformat(), "status": status, "detail": detail, "batch": line}
        with open(self.rejected_path, "a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def waiting(self) -> tuple[int, int]:
        """(batches, records) waiting to be sent."""
        with self.locked():
            lines = self.lines_locked()
        records = 0
        for line in lines:
            try:
                records += RecordBatch.model_validate_json(line).size()
            except ValueError:
                continue  # an unreadable line is reported (and moved aside) by the next replay
        return len(lines), records

    def rejected(self) -> int:
        """How many batches the store refused (kept in `rejected_path` for a person to look at)."""
        if not self.rejected_path.is_file():
            return 0
        return sum(1 for line in self.rejected_path.read_text().splitlines() if line.strip())
