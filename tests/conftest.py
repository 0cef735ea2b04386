"""Shared test set-up: offline Hugging Face, an isolated ACCEL_HOME per test, tiny models built once.

`make test` runs the suite in two pytest-xdist workers (`--dist loadscope`: a module's tests stay on one
worker, so its module fixtures are made once). The workers share one session folder: each tiny model and
each tiny skill is made once, by whichever worker asks first, under a file lock the other waits on. A test
marked `alone` (it asserts a quiet measurement) runs while no other test does (`machine_turn`).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

# Before anything imports huggingface_hub (it reads these once): never touch the network, and use an
# empty Hugging Face cache of our own instead of whatever the machine has. The first process of a session
# (the only one, or xdist's controller) makes the folder; the workers it starts inherit it.
_SESSION_VAR = "ACCEL_TEST_SESSION_DIR"
_OWNS_SESSION_DIR = _SESSION_VAR not in os.environ
_SESSION_DIR = Path(os.environ.get(_SESSION_VAR) or tempfile.mkdtemp(prefix="accel-tests-"))
os.environ[_SESSION_VAR] = str(_SESSION_DIR)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf-home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Fork servers of this session are its own (stopped with it), not the shared ones a shell's `accel` uses.
os.environ["ACCEL_SHARED_FORK_SERVERS"] = "0"
# What runs outside a test's own ACCEL_HOME (session and module fixtures, set up before `accel_home`) writes
# to a home of this process's in the session folder, never to the checkout's ./.accel or the user's home.
os.environ["ACCEL_HOME"] = str(_SESSION_DIR / f"home-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
# One intra-op thread for torch's work outside measurements (generation, checks, references), read as torch
# is imported: the suite runs two workers, and each fixture two processes at a time, on two cores, where
# OpenMP's spinning threads of one process only slow the other (24 comprehensive validations, two at a time:
# 37.8 s with a pool of two threads each, 15.0 s with one). A benchmark point sets its own threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The CLI's tables are read as a pipe gets them (160 columns, cli/output.py), whatever the terminal or
# xdist (whose workers get COLUMNS=80) says.
os.environ.pop("COLUMNS", None)

import shutil  # noqa: E402

# Prefect binds its console log handler to the sys.stderr of the moment it is first imported: imported
# here, before any test captures output, never inside a test whose captured stream is closed after it
# (later flow runs then fail to log, and log_prints turns that into a recursion).
import prefect  # noqa: E402, F401
import pytest  # noqa: E402

from accel.settings import get_settings  # noqa: E402
from tests.tiny_models import TINY_MODELS, build_tiny_models  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "alone: the test needs the machine to itself (it asserts a quiet measurement); under xdist it "
        "waits until no other test runs, and none starts until it is done",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWNS_SESSION_DIR:  # the last process of the session to end (xdist's controller ends after its workers)
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest modules first, so that under `--dist loadscope` neither worker is left with a long one at
    the end while the other idles (the rest keep their order)."""
    rank = {module: i for i, module in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


# Modules by their time in a whole run (setup of their module fixtures included), slowest first; those
# over ~15 s (2026-12-07), so that the last ones a worker takes are short and both workers end together.
SLOWEST_MODULES = (
    "tests/tasks/test_generate.py",
    "tests/tasks/test_validate.py",
    "tests/flows/test_flows.py",
    "tests/tasks/test_smollm2.py",
    "tests/tasks/test_breadth.py",
    "tests/tasks/test_benchmark.py",
    "tests/api/test_end_to_end.py",
    "tests/tasks/test_generation_config.py",
    "tests/cli/test_run_cli.py",
    "tests/tasks/test_kv_cache.py",
    "tests/api/test_openapi_fuzz.py",
    "tests/api/test_relay.py",
    "tests/flows/test_pipeline_overlap.py",
    "tests/storage/test_store.py",
    "tests/tasks/test_export_cache.py",
)


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """An flock on `path`, across processes (xdist's workers) and threads (each opens the file itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


@contextmanager
def machine_turn(alone: bool) -> Iterator[None]:
    """A readers-writer lock over the session's workers: every test holds the machine shared, an `alone`
    test holds it exclusively. The turnstile stops new shared holders while an exclusive one waits."""
    locks = _SESSION_DIR / "locks"
    with file_lock(locks / "turnstile") if alone else nullcontext():
        if not alone:
            with file_lock(locks / "turnstile"):
                pass
        with file_lock(locks / "machine", shared=not alone):
            yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return (yield)
    with machine_turn(item.get_closest_marker("alone") is not None):
        return (yield)


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
        path = self._root / name
        with file_lock(self._root / f".{name}.lock"):
            if not (path / "config.json").exists():  # built aside, then moved in whole: readers never see half
                staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self._root))
                built = build_tiny_models(staging, [name])[name]
                built.rename(path)
                shutil.rmtree(staging)
        return path

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

    def made_once(case: tuple[str, str], how) -> object:
        """One case, generated by whichever worker of the session comes first (the others wait, then reuse)."""
        if case not in made:
            with file_lock(skills_dir / f".{case[0]}-{case[1].replace('/', '-').replace(':', '-')}.lock"):
                made[case] = how(str(tiny_models[case[0]]), case[1])
        return made[case]

    def make(name: str, target: str):
        return made_once((name, target), lambda ref, target: generate(ref, target, out_dir=skills_dir))

    def make_all(cases: list[tuple[str, str]]) -> None:
        """Generate the cases not made yet, two at a time, each in an isolated process of its own (the
        export is mostly single-threaded Python: two processes use both cores where threads could not)."""
        todo = [case for case in dict.fromkeys(cases) if case not in made]
        isolated = partial(generate_isolated, out_dir=str(skills_dir))
        for name, _ in todo:  # built here, one after the other
            tiny_models[name]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda case: made_once(case, isolated), todo))

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
    with file_lock(_SESSION_DIR / ".venv-without-accel.lock"):
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
