"""Reading a model directory without running it: its config, its parameter count, its content hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

from accel.tasks.errors import ModelRefError
from accel.tasks.model_lock import MODEL_LOADING

# safetensors dtypes that hold weights; integer buffers (position ids, masks) are not parameters.
_WEIGHT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "U8"}


def load_config(path: Path, trust_remote_code: bool = False) -> Any:
    """The model's `PretrainedConfig`, refusing code that ships with the model unless trusted."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ModelRefError(f"cannot read {path / 'config.json'}: {err}") from err
    if not isinstance(raw, dict):
        raise ModelRefError(f"{path / 'config.json'} is not a JSON object")
    model_type = raw.get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES and not trust_remote_code:
        how = " (it ships its own code: pass --trust-remote-code to run it)" if "auto_map" in raw else ""
        raise ModelRefError(
            f"model type {model_type!r} in {path / 'config.json'} is not known to transformers"
            f"{how}; accel does not run code that comes with a model unless asked"
        )
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelRefError(f"transformers cannot read the config in {path}: {err}") from err


def _safetensors_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        return [path / shard for shard in shards]
    single = path / "model.safetensors"
    return [single] if single.is_file() else []


def _safetensors_parameters(file: Path) -> int:
    """Sum of weight tensor sizes, read from the file's JSON header (no tensor is loaded)."""
    with file.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__" and meta.get("dtype") in _WEIGHT_DTYPES:
            count = 1
            for dim in meta.get("shape", []):
                count *= dim
            total += count
    return total


def count_parameters(
    path: Path, config: Any, auto_class: str, trust_remote_code: bool = False
) -> tuple[int | None, Literal["safetensors", "config", "unknown"]]:
    """Parameter count from the safetensors headers, else by building the model on the meta device.

    (None, "unknown") when neither works: no safetensors, and the class needs a library not installed.
    """
    files = _safetensors_files(path)
    if files and all(f.is_file() for f in files):
        try:
            return sum(_safetensors_parameters(f) for f in files), "safetensors"
        except (OSError, ValueError, struct.error) as err:
            raise ModelRefError(f"corrupt safetensors file in {path}: {err}") from err
    import torch
    import transformers

    try:
        with MODEL_LOADING, torch.device("meta"):
            model = getattr(transformers, auto_class).from_config(config, trust_remote_code=trust_remote_code)
    except (ImportError, ValueError, TypeError, RuntimeError):
        return None, "unknown"
    return sum(p.numel() for p in model.parameters()), "config"


def _file_digest(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_json_cache(cache_file: Path | None) -> dict[str, Any]:
    """A JSON cache file's dict ({} when absent, unreadable or not a dict)."""
    if cache_file is None:
        return {}
    try:
        loaded = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def save_json_cache(cache_file: Path, cache: dict[str, Any]) -> None:
    """Write a JSON cache file whole (best effort: a cache that cannot be written is only not kept)."""
    # Written beside and renamed over, so a concurrent reader sees the old or the new file, never half.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".hashes-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(cache, fh)
        os.replace(tmp, cache_file)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def content_hash(path: Path, patterns: list[str], cache_file: Path | None = None) -> str:
    """A hash of the names and bytes of the files matching `patterns` under `path` (16 hex digits).

    File digests are cached by (path, size, mtime) in `cache_file`, so a multi-GB model is read once.
    """
    files = sorted(
        {
            f
            for pattern in patterns
            for f in path.rglob(pattern)
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
        }
    )
    cache = load_json_cache(cache_file)
    changed = False
    combined = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = _file_digest(file)
            changed = True
        combined.update(f"{file.relative_to(path).as_posix()}\0{cache[key]}\n".encode())
    if changed and cache_file is not None:
        save_json_cache(cache_file, cache)
    return combined.hexdigest()[:16]
