"""Model refs -> a local directory, a revision, and what the model is (family, task, size).

A ref is a local directory, a packaged model (a pip package carrying the weights), or a Hugging Face
Hub id (optionally `id@revision`) found in the local Hugging Face cache. Resolution is offline by
default; it downloads from the Hub only when allowed (`allow_download` / `ACCEL_ALLOW_DOWNLOAD=1`)
and the Hub is not switched off (`HF_HUB_OFFLINE=1`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from accel.settings import get_settings
from accel.tasks.errors import ModelRefError, UnsupportedModelError
from accel.tasks.families import FAMILIES, Family, FamilyInfo, detect_family
from accel.tasks.gguf_models import ensure_converted, weights_note_of
from accel.tasks.model_files import content_hash, count_parameters, load_config
from accel.tasks.model_refs import ACCEPTED_REFS, MODEL_FILE_PATTERNS, Source, locate, packaged_gguf
from accel.tasks.support import UndrivableModelError, check_drivable


class ResolvedModel(BaseModel):
    ref: str = Field(description="What the user named.")
    repo_id: str | None = Field(None, description="The Hub id, when the ref is one.")
    path: Path
    source: Source
    origin: str | None = Field(None, description="The package a packaged model came from (name==version).")
    revision: str = Field(description="Hub commit, or sha256: content hash of the model files.")
    family: Family
    task: str
    architecture: str
    model_type: str
    auto_class: str
    parameters: int | None = Field(description="None when it cannot be counted without the weights.")
    parameters_source: Literal["safetensors", "config", "unknown"]
    dtype: str | None = None
    weights_note: str | None = Field(
        None, description="Where the weights differ from the original checkpoint (a dequantized GGUF, say)."
    )
    trust_remote_code: bool = False

    @property
    def parameters_human(self) -> str:
        n = self.parameters
        if n is None:
            return "unknown"
        for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
            if n >= size:
                return f"{n / size:.1f}{unit}"
        return str(n)


def resolve_model(
    ref: str,
    *,
    allow_download: bool | None = None,
    trust_remote_code: bool = False,
    hash_cache: Path | None = None,
    check_support: bool = True,
    progress: Callable[[str, float], None] | None = None,
) -> ResolvedModel:
    """Resolve `ref` to a local model directory and describe the model.

    `allow_download` defaults to ACCEL_ALLOW_DOWNLOAD. Raises ModelRefError (nothing found, no
    config.json, remote code refused) or UnsupportedModelError: the architecture is outside the six
    families, or (UndrivableModelError, unless `check_support` is off) inside one but not something
    accel's template for it can drive, with the reason (`accel.tasks.support`). A packaged GGUF
    model is converted into a model folder the first time (`progress` hears of it; stderr without one).
    """
    settings = get_settings()
    if allow_download is None:
        allow_download = settings.allow_download
    if hash_cache is None:
        hash_cache = settings.cache_dir / "file-hashes.json"
    ref = (ref or "").strip()
    if not ref:
        raise ModelRefError(f"empty model ref: {ACCEPTED_REFS}")
    path, source, repo_id, hub_revision, origin = locate(ref, allow_download)
    if source == "packaged" and repo_id is not None and (gguf := packaged_gguf(repo_id)) is not None:
        path, hub_revision = ensure_converted(gguf, repo_id, origin or gguf.distribution, progress)
    if not (path / "config.json").is_file():
        raise ModelRefError(
            f"{ref!r} ({path}) has no config.json, so it is not a transformers model directory: {ACCEPTED_REFS}"
        )
    config = load_config(path, trust_remote_code=trust_remote_code)
    info: FamilyInfo = detect_family(config)
    parameters, parameters_source = count_parameters(path, config, info.auto_class, trust_remote_code)
    revision = hub_revision or "sha256:" + content_hash(path, MODEL_FILE_PATTERNS, cache_file=hash_cache)
    dtype = getattr(config, "dtype", None)  # the dtype the weights were saved in, when the config says
    model = ResolvedModel(
        ref=ref,
        repo_id=repo_id,
        path=path,
        source=source,
        origin=origin,
        revision=revision,
        family=info.family,
        task=info.task,
        architecture=info.architecture,
        model_type=info.model_type,
        auto_class=info.auto_class,
        parameters=parameters,
        parameters_source=parameters_source,
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
        weights_note=weights_note_of(path),
        trust_remote_code=trust_remote_code,
    )
    if check_support:
        check_drivable(model, config)
    return model


__all__ = [
    "FAMILIES",
    "ModelRefError",
    "ResolvedModel",
    "UndrivableModelError",
    "UnsupportedModelError",
    "resolve_model",
]
