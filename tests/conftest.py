"""Shared test set-up: offline Hugging Face, an isolated ACCEL_HOME per test, tiny models built once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub (it reads these once): never touch the network, and use an
# empty Hugging Face cache of our own instead of whatever the machine has.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="accel-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf-home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402

import pytest  # noqa: E402

from accel.settings import get_settings  # noqa: E402
from tests.tiny_models import build_tiny_models  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _remove_session_dir():
    yield
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def accel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ACCEL_HOME, so none sees another's results or writes to ./.accel."""
    home = tmp_path / "accel-home"
    monkeypatch.setenv("ACCEL_HOME", str(home))
    for name in ("ACCEL_RESULTS", "ACCEL_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """name -> directory of every tiny model (bert, gpt2, llama, t5, vit, wav2vec2, whisper, clip)."""
    return build_tiny_models(_SESSION_DIR / "tiny-models")


@pytest.fixture(scope="session")
def hf_cache() -> Path:
    """The Hugging Face hub cache directory the tests use (empty unless a test fills it)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)
