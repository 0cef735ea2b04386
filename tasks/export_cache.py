"""One validated ONNX export per model and export inputs, shared by every skill that runs it.

onnxruntime and OpenVINO skills of one model run the same graph. It is exported once, stored under
`$ACCEL_HOME/cache/onnx/<key>/` where the key hashes everything the export is made from, and each
skill dir gets the files as hardlinks (copies across filesystems), so a skill dir stays standalone
and holds the same bytes as if it had exported them itself.

An entry's `meta.json` names its files with size and sha256; an entry that does not match them is
removed and made again, never trusted. A hardlink shares its bytes with every skill dir that has
it, so a file edited in place through one of them is such a mismatch. Entries land in one rename
from a temp folder inside the cache, under a file lock per key (the kernel frees it when its holder
dies, however it dies). Two generations of one export, in two processes or two threads, make it
once: the second waits for the first and reuses what it stored.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from accel.settings import get_settings

_log = logging.getLogger("accel.export_cache")
_CHUNK = 1 << 20


def cache_root() -> Path:
    return get_settings().cache_dir / "onnx"


def export_key(identity: dict[str, Any], example: dict[str, np.ndarray]) -> str:
    """Content hash of what an export is made from: `identity` (model revision, template, exporter,
    opset, dtype, input and output names, dynamic axes, library versions) and the example it traces."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for name in sorted(example):
        value = np.ascontiguousarray(example[name])
        digest.update(f"{name}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def place(source: Path, destination: Path) -> None:
    """`destination` gets `source`'s bytes: a hardlink on one filesystem, else a copy."""
    try:
        os.link(source, destination)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, destination)


def artifact_files(artifact: Path) -> list[Path]:
    """The artifact and the files its graph keeps beside it (`model.onnx.data` for big models, an
    OpenVINO IR's weights `model.bin` beside `model.xml`)."""
    beside = [artifact.with_suffix(".bin")] if artifact.suffix == ".xml" else []
    return sorted(p for p in [*artifact.parent.glob(f"{artifact.name}*"), *beside] if p.is_file())


def _remove(entry: Path) -> None:
    if entry.exists():
        trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
        entry.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def _verified(entry: Path) -> dict[str, Any] | None:
    """The entry's meta when every file it names is there with its size and hash; else None, and the
    entry is removed (the caller makes it again)."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        _remove(entry)  # a folder without meta never finished landing (or lost it): not an entry
        return None
    try:
        meta = json.loads(meta_path.read_text())
        for name, want in meta["files"].items():
            path = entry / name
            if not path.is_file() or path.stat().st_size != want["bytes"] or file_sha256(path) != want["sha256"]:
                raise ValueError(f"{name} does not match its size and sha256")
    except (OSError, ValueError, KeyError, TypeError) as err:
        _log.warning("the shared export %s is damaged (%s): making it again", entry.name, err)
        _remove(entry)
        return None
    return meta


@dataclass
class SharedExport:
    """The export of one key, held under its lock. `reused`: its files are already in the skill dir."""

    key: str
    entry: Path
    artifact: Path
    reused: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.meta.get("files", {}).get(self.artifact.name, {}).get("sha256")

    def store(self, facts: dict[str, Any]) -> None:
        """Keep the export now in the skill dir (validated by the caller) as this key's entry."""
        if self.reused:
            return
        staging = self.entry.with_name(f".tmp-{self.key}-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            files = {}
            for path in artifact_files(self.artifact):
                place(path, staging / path.name)
                files[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            meta = {"key": self.key, "files": files, "facts": facts, "created_at": datetime.now(UTC).isoformat()}
            (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            _remove(self.entry)  # a damaged one (we hold the lock: nobody else writes it)
            os.rename(staging, self.entry)
            self.meta = meta
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def manifest_facts(self) -> dict[str, Any]:
        """What the skill's manifest says of the shared export."""
        return {"key": self.key, "sha256": self.sha256, "reused": self.reused}


@contextmanager
def shared_export(key: str, artifact: Path) -> Iterator[SharedExport]:
    """Hold `key`'s export while a generation uses it. When a verified entry exists its files are
    placed beside `artifact` (reused); otherwise the caller exports to `artifact`, validates, and calls
    `store` (only a validated export is kept)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    shared = SharedExport(key=key, entry=root / key, artifact=artifact)
    with open(root / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the export is stored, or proved bad
        try:
            for leftover in root.glob(f".tmp-{key}-*"):  # we hold the key: these are a dead holder's
                shutil.rmtree(leftover, ignore_errors=True)
            meta = _verified(shared.entry) if shared.entry.exists() else None
            if meta is not None:
                for name in meta["files"]:
                    place(shared.entry / name, artifact.parent / name)
                shared.reused, shared.meta = True, meta
            yield shared
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
