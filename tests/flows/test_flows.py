"""The orchestration, for real: a Prefect server, flows, a process worker on its own pool, events, artifacts."""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from accel.settings import get_settings
from accel.storage import ResultsStore
from tests.fork_servers import fork_servers_of
from tests.processes import gone

QUICK = {
    "batches": [1],
    "seqs": [8],
    "scenarios": ["forward"],
    "warmup": 0,
    "min_iters": 3,
    "min_seconds": 0.05,
    "rounds": 1,
}
ROOT = Path(__file__).resolve().parents[2]


def results() -> ResultsStore:
    return ResultsStore(get_settings().results_path)


def artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # the latest version of the artifact with that key
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
        )
    return found[0] if found else None


def test_the_pipeline_runs_every_target_and_one_failing_target_stops_no_other(prefect_api, tiny_models, shared_skills):
    from accel.flows.pipeline import pipeline

    models = [str(tiny_models["bert"]), str(tiny_models["gpt2"])]
    result = pipeline(
        models=models, targets=["cpu/onnxruntime", "cpu/openvino", "mps/torch"], level="basic", bench=QUICK
    )
    outcome = {(r.model.rsplit("/", 1)[1], r.target): r for r in result.results}
    assert len(outcome) == 6 and result.status == "failed"
    for name in ("bert", "gpt2"):
        assert (
            outcome[name, "mps/torch"].status == "failed" and "generation failed" in outcome[name, "mps/torch"].message
        )
        for target in ("cpu/onnxruntime", "cpu/openvino"):
            chain = outcome[name, target]
            assert chain.status == "passed", chain.message
            assert chain.checks_passed == chain.checks_total == 4 and chain.p50_ms > 0
            store = results()
            run = store.get_run(chain.run_id)
            assert (run.kind, run.status, run.parent_run_id) == ("chain", "completed", result.run_id)
            assert {c.check for c in store.checks(run_id=chain.run_id)} == {
                "loads",
                "forward_shapes",
                "finite",
                "parity",
            }
            rows = store.measurements(run_id=chain.run_id)
            assert rows and all(m.status == "ok" for m in rows)
            assert {m.scenario for m in rows} == {"forward"}
    pipeline_run = results().get_run(result.run_id)
    assert pipeline_run.kind == "pipeline" and pipeline_run.status == "failed" and "mps/torch" in pipeline_run.message
    table = artifact("accel-pipeline")
    assert table is not None and "cpu/openvino" in str(table.data)
    assert "4 of 6 targets passed" in artifact("accel-pipeline-report").data


def test_a_failed_test_skips_the_benchmark_with_the_reason(prefect_api, tiny_models, tmp_path):
    import shutil

    from accel.flows.chain import chain

    os.environ["ACCEL_SKILLS"] = str(tmp_path / "skills")
    get_settings.cache_clear()
    try:
        from accel.tasks.generate import generate

        skill = generate(str(tiny_models["vit"]), "cpu/onnxruntime")
        source = (skill.path / "skill.py").read_text()
        call = "        return self._backend.run(check_inputs(inputs))\n"
        (skill.path / "skill.py").write_text(
            source.replace(
                call, "        return {k: v * 1.01 for k, v in self._backend.run(check_inputs(inputs)).items()}\n"
            )
        )
        result = chain(str(tiny_models["vit"]), "cpu/onnxruntime", level="basic", bench=QUICK)
    finally:
        del os.environ["ACCEL_SKILLS"]
        shutil.rmtree(tmp_path / "skills", ignore_errors=True)
    assert result.status == "failed" and result.stage == "test" and "parity (failed)" in result.message
    [row] = results().measurements(run_id=result.run_id)
    assert row.status == "skipped" and "parity" in row.error
    assert results().get_run(result.run_id).status == "failed"


def kill_the_first_benchmark(hardware: str, timeout_s: float) -> tuple[threading.Thread, dict]:
    """A thread that SIGKILLs the first process seen holding `hardware` for a benchmark (not this one)."""
    from accel.tasks.device_lock import holder

    killed: dict = {}

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            who = holder(hardware)
            if who and who.get("pid") and who["pid"] != os.getpid():
                os.kill(who["pid"], signal.SIGKILL)
                killed.update(who, at=time.monotonic())
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def _clear_pool(pool: str) -> None:
    """Delete every flow run waiting on `pool` that an earlier test of this session left there."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        waiting = client.read_flow_runs(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING]))
            ),
        )
        for run in waiting:
            client.delete_flow_run(run.id)


@pytest.fixture(scope="class")
def cpu_worker(prefect_api, skills_dir, tmp_path_factory) -> Iterator[Path]:
    """A real process worker on `accel-cpu` with the chain deployment, as accel up starts it; its ACCEL_HOME
    (a test reads that home's results and device lock with `on_worker_home`). Its log is home/worker.log."""
    from prefect.client.orchestration import get_client

    from accel.cli.services import deploy, ensure_pools, with_scripts_on_path, worker_command_line
    from accel.flows.pipeline import remote_pools

    home = tmp_path_factory.mktemp("worker-home")
    env = {
        **with_scripts_on_path(dict(os.environ)),  # the worker finds accel-flow-run, as accel up's do
        "PREFECT_API_URL": prefect_api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "ACCEL_HOME": str(home),
        "ACCEL_SKILLS": str(skills_dir),
        # as accel up's and accel worker's workers: each flow run forked warm (flows/warm_engine), so what the
        # tests do to a flow run's process (kill it, cancel it) reaches a forked engine through its launcher
        "ACCEL_SHARED_FORK_SERVERS": "1",
    }
    ensure_pools(prefect_api, ["accel-cpu"])
    deploy(ROOT, env, ["chain/cpu"], timeout_s=180)  # raises with prefect's own output when it fails
    _clear_pool("accel-cpu")  # only these tests' runs for its worker (the shared server may hold others')
    log = open(home / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        worker_command_line("accel-cpu", "test-worker"),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "cpu" not in remote_pools() and time.monotonic() < deadline:
            time.sleep(1)
        assert "cpu" in remote_pools(), (home / "worker.log").read_text()[-2000:]
        yield home
    finally:
        os.killpg(worker.pid, 9)
        worker.wait()
        log.close()
        with get_client(sync_client=True) as client:  # later tests run chains here, not on a dead worker
            client.delete_work_pool("accel-cpu")
        for server in fork_servers_of(home):  # shared: they would outlive the tests until idle
            server.kill()


def on_worker_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCEL_HOME", str(home))
    get_settings.cache_clear()


class TestChainsOnARealWorker:
    """Flow runs of the chain deployment on a real process worker (the class's own: its pool is gone after)."""

    def test_a_chain_on_a_real_worker_killed_mid_benchmark_is_recorded_crashed_and_its_retry_gets_the_device(
        self, cpu_worker, tiny_models, monkeypatch
    ):
        from accel.flows.pipeline import pipeline

        on_worker_home(cpu_worker, monkeypatch)
        watcher, killed = kill_the_first_benchmark("cpu", timeout_s=240)
        result = pipeline(
            models=[str(tiny_models["bert"])],
            targets=["cpu/onnxruntime"],
            level="basic",
            bench=QUICK,
            pickup_timeout_s=60,
        )
        watcher.join(timeout=1)
        engines = [s for s in fork_servers_of(cpu_worker) if "prefect.engine" in s.info["cmdline"]]
        assert len(engines) == 1  # both attempts forked warm (the first one started the engine's server)
        worker_log = (cpu_worker / "worker.log").read_text()
        [chain] = result.results
        assert chain.status == "passed", chain.message
        assert chain.run_id in worker_log  # the worker ran the retry, not this process
        assert results().get_run(chain.run_id).parent_run_id == result.run_id
        [row] = results().measurements(run_id=chain.run_id)
        assert row.status == "ok"
        # The first attempt was killed while it held the device: its row says so, with Prefect's word for it.
        assert killed.get("flow_run_id") and killed["flow_run_id"] != chain.run_id, killed
        crashed = results().get_run(killed["flow_run_id"])
        assert crashed.status == "crashed" and "Crashed" in crashed.message, crashed
        # The kernel freed the file lock at once, and the dead holder's Prefect slot did not hold the retry up.
        assert row.details["waited_for_device_s"] < 15, row.details

    def test_a_chain_cancelled_mid_benchmark_on_a_real_worker_ends_cancelled_and_its_process_with_it(
        self, cpu_worker, tiny_models, monkeypatch
    ):
        """Prefect cancels through the worker: a SIGTERM to the flow run's process (the warm launcher), which
        goes on to the forked engine; the run ends Cancelled and no process of it is left."""
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment
        from prefect.states import Cancelling

        from accel.tasks.device_lock import holder

        on_worker_home(cpu_worker, monkeypatch)
        long = {**QUICK, "min_seconds": 120.0}
        params = {"model": str(tiny_models["bert"]), "target": "cpu/onnxruntime", "level": "basic", "bench": long}
        flow_run = run_deployment("chain/cpu", parameters=params, timeout=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ((who := holder("cpu")) or {}).get("flow_run_id") != str(flow_run.id):
            time.sleep(0.1)
        assert who and who.get("flow_run_id") == str(flow_run.id), who  # benchmarking, in the forked engine
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelling())
            while time.monotonic() < deadline and not (state := client.read_flow_run(flow_run.id).state).is_final():
                time.sleep(0.2)
        assert state.is_cancelled(), (state, (cpu_worker / "worker.log").read_text()[-2000:])
        assert gone(who["pid"])
        assert holder("cpu") is None  # the device is free for the next benchmark


def test_nightly_finds_a_planted_regression_and_says_so(prefect_api, tiny_models, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from accel.flows.nightly import REGRESSION_EVENT, nightly

    monkeypatch.setenv("ACCEL_SKILLS", str(tmp_path / "skills"))
    get_settings.cache_clear()
    matrix = tmp_path / "nightly.yaml"
    matrix.write_text(
        yaml.safe_dump(
            {
                "models": [str(tiny_models["bert"])],
                "targets": ["cpu/onnxruntime"],
                "level": "basic",
                "benchmark": {
                    "batches": [1],
                    "seqs": [8],
                    "warmup": 2,
                    "min_iters": 40,
                    "min_seconds": 0.2,
                    "threads": 1,
                    # A busy CI machine flags both nights noisy (inconclusive): this test is about the
                    # planted 3 ms (30 times the call), far past any noise, so it gates neither on
                    # contention nor on the rounds' spread (22-31% seen in a full suite run).
                    "max_foreign_share": 1.0,
                    "max_steal_share": 1.0,
                    "noise_cv": 1.0,
                },
            }
        )
    )
    first = nightly(str(matrix), trigger="test")
    assert first.previous_run_id is None and first.regressions == 0 and first.pipeline.status == "passed"
    skill = Path(first.pipeline.results[0].skill_path) / "skill.py"
    call = "        return self._backend.run(check_inputs(inputs))\n"
    skill.write_text(skill.read_text().replace(call, "        time.sleep(0.003)\n" + call))
    second = nightly(str(matrix), trigger="test")
    assert second.previous_run_id == first.run_id and second.regressions == 1
    [point] = second.comparisons
    assert point.change.verdict == "regressed" and point.change.ratio > 1.5
    report = artifact("accel-nightly-regressions")
    assert report is not None and "**regressed**" in report.data
    assert results().get_run(second.run_id).status == "failed"
    deadline = time.monotonic() + 30
    events = []
    while time.monotonic() < deadline and not events:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[REGRESSION_EVENT])), limit=50)
        events = [e for e in page.events if e.payload.get("run_id") == second.run_id]
        time.sleep(1)
    assert events and events[0].payload["target"] == "cpu/onnxruntime" and events[0].payload["ratio"] > 1.5


def test_a_benchmark_the_skill_cannot_take_ends_its_chain_with_the_reason(prefect_api, tiny_models, shared_skills):
    from accel.flows.chain import chain

    result = chain(str(tiny_models["bert"]), "cpu/onnxruntime", level="basic", bench={**QUICK, "seqs": [100000]})
    assert result.status == "failed" and result.stage == "benchmark", result
    assert "benchmark refused" in result.message and "100000" in result.message
    run = results().get_run(result.run_id)
    assert run.status == "failed" and "benchmark refused" in run.message
