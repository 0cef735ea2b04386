"""`accel run` as a user runs it, embedded: its pipeline runs in a process forked warm from the server that
has imported Prefect and the flows (flows/warm_engine), and Ctrl-C there ends that run cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accel.settings import get_settings
from accel.storage import ResultsStore
from accel.tasks.device_lock import holder
from accel.tasks.isolated.process import INTERRUPT_GRACE_S
from tests.fork_servers import fork_servers_of
from tests.processes import gone

QUICK = ["--level", "basic", "--batch", "1", "--seq", "8", "--rounds", "1"]


@pytest.fixture
def accel_run(prefect_api, accel_home, skills_dir):
    """`accel run ARGS` started as a process of its own, as from a shell (fork servers shared), against the
    session's Prefect server; the fork servers it started are stopped after the test."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "ACCEL_HOME": str(accel_home),
        "ACCEL_SKILLS": str(skills_dir),  # the session's tiny skills, reused
        "ACCEL_SHARED_FORK_SERVERS": "1",
    }
    started = []

    def start(*args: str) -> subprocess.Popen:
        command = [str(Path(sys.executable).with_name("accel")), "run", *args]
        started.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
    for server in fork_servers_of(accel_home):
        server.kill()


def test_the_pipeline_runs_in_a_warm_fork_and_its_table_is_printed_here(accel_run, tiny_skill, tiny_models):
    tiny_skill("bert", "cpu/onnxruntime")
    process = accel_run(str(tiny_models["bert"]), "--targets", "cpu/onnxruntime", "--min-seconds", "0.05", *QUICK)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert "cpu/onnxruntime" in out and "passed" in out and "4/4" in out
    [run] = ResultsStore(get_settings().results_path).list_runs(kind="pipeline")
    assert run.status == "completed" and run.trigger == "cli"
    engines = [s for s in fork_servers_of(get_settings().home) if "prefect.engine" in s.info["cmdline"]]
    assert len(engines) == 1  # the pipeline's process was a child of it, not this command


def test_ctrl_c_ends_the_run_it_started_cleanly_there_too(accel_run, tiny_skill, tiny_models, prefect_api):
    from prefect.client.orchestration import get_client

    tiny_skill("bert", "cpu/onnxruntime")
    process = accel_run(str(tiny_models["bert"]), "--targets", "cpu/onnxruntime", "--min-seconds", "120", *QUICK)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (who := holder("cpu")) and process.poll() is None:
        time.sleep(0.1)
    assert who and who.get("pid"), process.communicate()[1][-3000:] if process.poll() is not None else who
    process.send_signal(signal.SIGINT)  # Ctrl-C at the terminal
    sent = time.monotonic()
    _, err = process.communicate(timeout=60)
    # it ended there on its own, well within the grace before a kill, and said so here without a traceback
    assert time.monotonic() - sent < INTERRUPT_GRACE_S / 2 and process.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    assert gone(who["pid"])
    assert holder("cpu") is None  # the device is free for the next benchmark
    runs = ResultsStore(get_settings().results_path).list_runs()
    assert runs and all(r.status != "running" for r in runs), [(r.kind, r.status) for r in runs]
    [pipeline] = [r for r in runs if r.kind == "pipeline"]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(pipeline.run_id).state
    assert state.is_final() and not state.is_completed(), state
