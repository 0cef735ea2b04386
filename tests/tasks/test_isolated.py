"""tasks/isolated: warm isolated processes keep what fresh processes gave (containment, own state, own peak)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from accel.tasks import isolated
from tests.processes import gone

ENTRY = "tests.tasks.isolated_probe:main"
PRELOAD = ("json", "random")  # light: these tests are about the mechanism, not the libraries


def _run(mode: str, timeout_s: float = 60.0, preload=PRELOAD):
    with isolated.start(ENTRY, [mode], preload) as process:
        events = list(process.events(timeout_s))
        if process.timed_out:
            process.kill()
        return events, process.wait(10), process.tail(), process.timed_out


@pytest.fixture(params=["warm", "cold"])
def mode(request, monkeypatch):
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1" if request.param == "warm" else "0")
    return request.param


@pytest.mark.parametrize(
    ("fault", "code"), [("ok", 0), ("segfault", -11), ("exit", 7), ("raise", 1)], ids=lambda v: str(v)
)
def test_each_end_of_a_child_reaches_the_caller_with_its_exit_status_and_output(mode, fault, code):
    events, returncode, tail, timed_out = _run(fault)
    assert [e["event"] for e in events] == ["hello"]
    assert returncode == code and not timed_out
    hello = events[0]
    assert hello["pgid"] == hello["pid"] == hello["sid"], "the child leads a session of its own"
    assert hello["pid"] != os.getpid() and hello["cwd"] == os.getcwd()
    assert "a line on stdout" in tail and "a line on stderr" in tail
    if fault == "raise":
        assert "ValueError: the probe raised" in tail


def test_a_hang_times_out_and_killing_it_takes_its_own_children_too(mode):
    with isolated.start(ENTRY, ["grandchild"], PRELOAD) as process:
        events = list(process.events(3.0))
        assert process.timed_out and [e["event"] for e in events] == ["hello", "grandchild"]
        process.kill()
        assert process.wait(10) == -9
    grandchild = events[1]["pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(grandchild):
        time.sleep(0.05)
    assert not _alive(grandchild), "the child's own child outlived the kill of its process group"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_warm_children_share_no_state_and_each_peak_is_its_own(monkeypatch):
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    with isolated.start(ENTRY, ["allocate"], PRELOAD) as big:
        assert [e["event"] for e in big.events(60)] == ["hello", "allocated"]
    monkeypatch.setenv("ACCEL_PROBE", "set after the server started")
    with isolated.start(ENTRY, ["hang"], PRELOAD) as small:
        hello = next(small.events(60))
        small_peak = isolated.peak_rss_of(small.pid)
        small.kill()
    with isolated.start(ENTRY, ["allocate"], PRELOAD) as again:
        events = list(again.events(60))
        big_peak = isolated.peak_rss_of(again.pid)
    assert hello["leak"] == 0 and events[0]["leak"] == 0, "a child saw what an earlier child allocated"
    assert hello["probe_env"] == "set after the server started", "the caller's environment of now reaches the child"
    assert hello["random"] != events[0]["random"], "two children repeated one random state"
    assert small_peak is not None and small_peak < 150 << 20, "a child's peak carried an earlier child's"
    assert big_peak is None or big_peak > small_peak  # read after its report, it may already have exited


def test_a_dead_server_is_replaced_and_an_import_time_variable_gets_a_server_of_its_own(monkeypatch):
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    first = isolated.fork_server(PRELOAD)
    _run("ok")
    first.process.kill()
    first.process.wait()
    events, code, _, _ = _run("ok")
    assert code == 0 and events
    second = isolated.fork_server(PRELOAD)
    assert second is not first and second.alive()
    # libraries read such variables as they are imported: another value, another server
    monkeypatch.setenv("OMP_NUM_THREADS", str(int(os.environ.get("OMP_NUM_THREADS", "1")) + 1))
    assert isolated.fork_server(PRELOAD) is not second


def test_a_child_whose_server_dies_first_still_reports_and_its_lost_status_is_said_so(monkeypatch):
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    server = isolated.fork_server(PRELOAD, fresh=True)
    with isolated.start(ENTRY, ["hang"], PRELOAD) as process:
        events = process.events(60)
        assert next(events)["event"] == "hello"
        server.process.kill()
        server.process.wait()
        process.kill()
        assert list(events) == [] and not process.timed_out
        assert process.wait(10) is None
    assert "unknown" in isolated.describe_exit(None)


def test_a_shared_server_outlives_its_first_caller_and_serves_the_next_process(monkeypatch):
    short = tempfile.mkdtemp(prefix="accel-t-", dir="/tmp")  # a Unix socket path has ~107 bytes at most
    monkeypatch.setenv("TMPDIR", short)
    monkeypatch.setattr(tempfile, "tempdir", short)
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    monkeypatch.setenv("ACCEL_SHARED_FORK_SERVERS", "1")
    server_pid = None
    try:
        events, code, _, _ = _run("ok")
        assert code == 0 and events
        server_pid = isolated.fork_server(PRELOAD).await_ready()["pid"]
        folder = next(Path(short).glob("accel-fork-*"))
        assert folder.stat().st_mode & 0o777 == 0o700
        # another process (a flow run of the same worker) forks from the same server
        probe = (
            "from accel.tasks import isolated; "
            f"p = isolated.start({ENTRY!r}, ['ok'], {PRELOAD!r}); print(list(p.events(60))[0]['pid']); p.close(); "
            f"print(isolated.fork_server({PRELOAD!r}).await_ready()['pid'])"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=os.environ)
        assert out.returncode == 0, out.stderr
        child_pid, their_server = (int(line) for line in out.stdout.split())
        assert their_server == server_pid, "the second process started a server of its own"
        assert child_pid != server_pid
    finally:
        isolated.stop_servers()
        if server_pid is not None:
            os.kill(server_pid, signal.SIGKILL)
        shutil.rmtree(short, ignore_errors=True)


def test_a_request_right_after_a_prewarm_is_served_once_the_server_is_ready(monkeypatch):
    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    preload = ("json", "tests.tasks.slow_import")  # not ready at once: the prewarm and the request overlap
    for _ in range(3):
        isolated.stop_servers()
        isolated.prewarm(preload)
        done: dict = {}
        request = threading.Thread(target=lambda done=done: done.update(run=_run("ok", preload=preload)), daemon=True)
        request.start()
        request.join(60)
        assert "run" in done and done["run"][1] == 0, "the request waited on the message the prewarm had read"


def test_a_call_returns_its_result_and_raises_its_error_again_as_the_same_kind(monkeypatch):
    from accel.tasks.errors import LevelError
    from accel.tasks.isolated.call import call

    monkeypatch.setenv("ACCEL_WARM_PROCESSES", "1")
    assert call("json:loads", PRELOAD, s='{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(LevelError, match="extreme") as refused:
        call("accel.tasks.levels:check_level", PRELOAD, level="extreme")
    with pytest.raises(LevelError) as here:
        from accel.tasks.levels import check_level

        check_level("extreme")
    assert str(refused.value) == str(here.value)
    with pytest.raises(RuntimeError, match="JSONDecodeError"):
        call("json:loads", PRELOAD, s="{")


def test_an_interrupted_call_interrupts_its_child_which_ends_cleanly_first(tmp_path):
    """Ctrl-C on a caller (accel run) reaches the work it waits on as a KeyboardInterrupt there (a flow then
    records how it ended), not as a kill; the call raises the interrupt once the child has ended."""
    script = (
        "import sys; from accel.tasks.isolated.call import call; "
        "call('tests.tasks.isolated_probe:wait_for_interrupt', ('json',), folder=sys.argv[1], "
        "progress=lambda step, fraction: print(step, flush=True))"
    )
    env = {**os.environ, "ACCEL_WARM_PROCESSES": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    caller = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert caller.stdout.readline().strip() == "waiting"
    caller.send_signal(signal.SIGINT)
    _, err = caller.communicate(timeout=60)
    assert caller.returncode != 0 and "KeyboardInterrupt" in err
    child = int((tmp_path / "interrupted").read_text())  # it caught the interrupt itself: no kill came first
    assert gone(child)
