"""Shared test set-up: offline Hugging Face, an isolated ACCEL_HOME per test, tiny models built once."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Before anything imports huggingface_hub (it reads these once): never touch the network, and use an
# empty Hugging Face cache of our own instead of whatever the machine has.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="accel-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf-home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Fork servers of this session are its own (stopped with it), not the shared ones a shell's `accel` uses.
os.environ["ACCEL_SHARED_FORK_SERVERS"] = "0"

import shutil  # noqa: E402

# Prefect binds its console log handler to the sys.stderr of the moment it is first imported: imported
# here, before any test captures output, never inside a test whose captured stream is closed after it
# (later flow runs then fail to log, and log_prints turns that into a recursion).
import prefect  # noqa: E402, F401
import pytest  # noqa: E402

from accel.settings import get_settings  # noqa: E402
from tests.tiny_models import TINY_MODELS, build_tiny_models  # noqa: E402


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


class _TinyModels(Mapping[str, Path]):
    """name -> directory of a tiny model, each built the first time a test asks for it (a second or two
    each; the whole set took ~20 s, paid by whichever test came first)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def __getitem__(self, name: str) -> Path:
        if name not in TINY_MODELS:
            raise KeyError(name)
        return build_tiny_models(self._root, [name])[name]

    def __iter__(self) -> Iterator[str]:
        return iter(TINY_MODELS)

    def __len__(self) -> int:
        return len(TINY_MODELS)


@pytest.fixture(scope="session")
def tiny_models() -> Mapping[str, Path]:
    """name -> directory of a tiny model (bert, gpt2, llama, t5, vit, wav2vec2, whisper, clip), built lazily."""
    return _TinyModels(_SESSION_DIR / "tiny-models")


@pytest.fixture(scope="session")
def hf_cache() -> Path:
    """The Hugging Face hub cache directory the tests use (empty unless a test fills it)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


@pytest.fixture(scope="session")
def skills_dir() -> Path:
    """Where the session's generated skills live (shared, so each is generated once)."""
    return _SESSION_DIR / "skills"


@pytest.fixture(scope="session")
def tiny_skill(tiny_models, skills_dir):
    """`tiny_skill(name, target)`: the generated skill of a tiny model, generated once per session."""
    from accel.tasks.generate import generate
    from accel.tasks.generate_stage import generate_isolated

    made = {}

    def make(name: str, target: str):
        if (name, target) not in made:
            made[name, target] = generate(str(tiny_models[name]), target, out_dir=skills_dir)
        return made[name, target]

    def make_all(cases: list[tuple[str, str]]) -> None:
        """Generate the cases not made yet, two at a time, each in an isolated process of its own (the
        export is mostly single-threaded Python: two processes use both cores where threads could not)."""
        todo = [case for case in dict.fromkeys(cases) if case not in made]
        models = {name: str(tiny_models[name]) for name, _ in todo}  # built here, one after the other
        with ThreadPoolExecutor(max_workers=2) as pool:
            skills = pool.map(lambda case: generate_isolated(models[case[0]], case[1], out_dir=str(skills_dir)), todo)
            made.update(zip(todo, skills, strict=True))

    make.all = make_all
    return make


@pytest.fixture(scope="session")
def python_without_accel() -> Path:
    """An interpreter that has this venv's libraries (numpy, torch, runtimes) but cannot import accel.

    A bare venv whose .pth file adds this venv's site-packages as a plain path: .pth files inside it
    (accel's editable-install hook among them) are not run, so `import accel` fails there.
    """
    import subprocess
    import sysconfig
    import venv

    env_dir = _SESSION_DIR / "venv-without-accel"
    if not env_dir.exists():
        venv.create(env_dir, with_pip=False, symlinks=True)
        purelib = Path(
            subprocess.run(
                [
                    str(env_dir / "bin" / "python"),
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        (purelib / "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = env_dir / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-I", "-c", "import numpy, onnxruntime, openvino, torch; import accel"],
        capture_output=True,
        text=True,
    )
    assert "No module named 'accel'" in probe.stderr, probe.stderr
    return python


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """One Prefect server for the whole session (a real one, SQLite in a temporary folder); its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture
def shared_skills(skills_dir, monkeypatch) -> Path:
    """Flows in this test put their skills where the session's tiny skills already are (no regeneration)."""
    monkeypatch.setenv("ACCEL_SKILLS", str(skills_dir))
    get_settings.cache_clear()
    return skills_dir
