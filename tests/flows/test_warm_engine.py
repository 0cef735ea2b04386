"""flows/warm_engine: the process a worker starts for a flow run stands in for the engine forked warm.

The launcher's mechanics with a probe entry (tests/flows/engine_probe.py) in a server of its own; then
`accel-flow-run` itself, which runs Prefect's own `prefect.engine` main, warm and cold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from accel.flows.warm_engine import ENGINE_PRELOAD
from accel.tasks.isolated.servers import import_env
from tests.processes import gone

LAUNCH = (
    "import sys; from accel.flows.warm_engine import start_child, stand_in_for; "
    "sys.exit(stand_in_for(start_child('tests.flows.engine_probe:run', ('json',), sys.argv[1:])))"
)
ROOT = Path(__file__).resolve().parents[2]


def launcher(*args: str) -> subprocess.Popen:
    env = {**os.environ, "ACCEL_SHARED_FORK_SERVERS": "0", "PYTHONPATH": str(ROOT)}  # a server of its own
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def child_pid(process: subprocess.Popen) -> int:
    line = process.stdout.readline()
    assert line.startswith("child "), line
    return int(line.split()[1])


def test_the_childs_output_and_exit_code_are_the_launchers():
    process = launcher("exit", "hello", "3")
    pid = child_pid(process)
    out = process.stdout.read()  # to its end: the launcher's stdout closes as it exits
    assert process.wait(timeout=60) == 3 and "hello" in out
    assert pid != process.pid  # forked by the server, not the launcher itself


def test_a_sigterm_to_the_launcher_reaches_the_child_and_the_launcher_ends_by_it():
    process = launcher("hang")
    pid = child_pid(process)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)  # what a worker sends to cancel a flow run
    out = process.stdout.read()
    assert "got SIGTERM" in out and process.wait(timeout=30) == -signal.SIGTERM
    assert gone(pid)


def test_a_launcher_killed_outright_takes_its_child_with_it():
    process = launcher("hang")
    pid = child_pid(process)
    process.kill()
    process.wait(timeout=10)
    assert gone(pid), "the child outlived its launcher"


def test_a_server_that_imports_prefect_keys_on_prefects_settings_but_not_on_a_flow_runs_own_variables():
    env = {"PREFECT_API_URL": "http://a/api", "PREFECT__FLOW_RUN_ID": "1", "ACCEL_HOME": "/x", "OMP_NUM_THREADS": "2"}
    other_run = {**env, "PREFECT__FLOW_RUN_ID": "2", "ACCEL_HOME": "/y"}
    other_server = {**env, "PREFECT_API_URL": "http://b/api"}
    assert import_env(env, ENGINE_PRELOAD) == import_env(other_run, ENGINE_PRELOAD)
    assert import_env(env, ENGINE_PRELOAD) != import_env(other_server, ENGINE_PRELOAD)
    assert import_env(env, ("numpy",)) == import_env(other_server, ("numpy",))  # no Prefect imported there


def test_accel_flow_run_runs_prefects_own_engine_main_warm_and_cold():
    marker = uuid.uuid4().hex  # an import-time variable: a server of this test's own, stopped after it
    script = str(Path(sys.executable).with_name("accel-flow-run"))
    try:
        for shared in ("1", "0"):
            env = {**os.environ, "ACCEL_SHARED_FORK_SERVERS": shared, "WARM_ENGINE_TEST": marker}
            done = subprocess.run([script, "not-a-uuid"], env=env, capture_output=True, text=True, timeout=120)
            said = done.stdout + done.stderr
            assert done.returncode == 1 and "Invalid flow run id" in said, said[-2000:]
            assert "starting it cold" not in said
        servers = [p for p in psutil.process_iter(["cmdline"]) if _engine_server(p, marker)]
        assert len(servers) == 1  # the warm run's; the cold one started none
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if _engine_server(process, marker):
                process.kill()


def _engine_server(process: psutil.Process, marker: str) -> bool:
    try:
        cmdline = process.info["cmdline"] or []
        return (
            "accel.tasks.isolated.server" in cmdline
            and "prefect.engine" in cmdline
            and (process.environ().get("WARM_ENGINE_TEST") == marker)
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
