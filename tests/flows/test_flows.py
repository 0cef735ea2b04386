"""The orchestration, for real: a Prefect server, flows, a process worker on its own pool, events, artifacts."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

from accel.settings import get_settings
from accel.storage import ResultsStore
from tests.fork_servers import fork_servers_of

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


def test_a_chain_on_a_real_worker_killed_mid_benchmark_is_recorded_crashed_and_its_retry_gets_the_device(
    prefect_api, tiny_models, shared_skills, tmp_path
):
    from accel.cli.services import deploy, ensure_pools, with_scripts_on_path, worker_command_line
    from accel.flows.pipeline import pipeline, remote_pools

    env = {
        **with_scripts_on_path(dict(os.environ)),  # the worker finds accel-flow-run, as accel up's do
        "PREFECT_API_URL": prefect_api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "ACCEL_HOME": str(get_settings().home),
        "ACCEL_SKILLS": str(shared_skills),
        # as accel up's and accel worker's workers: each flow run forked warm (flows/warm_engine), so the kill
        # below takes a forked engine and its launcher must stand in for it, Crashed as Prefect sees it
        "ACCEL_SHARED_FORK_SERVERS": "1",
    }
    ensure_pools(prefect_api, ["accel-cpu"])
    deploy(ROOT, env, ["chain/cpu"], timeout_s=180)  # raises with prefect's own output when it fails
    _clear_pool("accel-cpu")  # only this test's runs for its worker (the shared server may hold others')
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
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
        assert "cpu" in remote_pools(), (tmp_path / "worker.log").read_text()[-2000:]
        watcher, killed = kill_the_first_benchmark("cpu", timeout_s=240)
        result = pipeline(
            models=[str(tiny_models["bert"])],
            targets=["cpu/onnxruntime"],
            level="basic",
            bench=QUICK,
            pickup_timeout_s=60,
        )
        watcher.join(timeout=1)
        engines = [s for s in fork_servers_of(get_settings().home) if "prefect.engine" in s.info["cmdline"]]
        assert len(engines) == 1  # both attempts forked warm (the first one started the engine's server)
    finally:
        os.killpg(worker.pid, 9)
        worker.wait()
        log.close()
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # later tests run chains here, not on a dead worker
            client.delete_work_pool("accel-cpu")
        for server in fork_servers_of(get_settings().home):  # shared: they would outlive the test until idle
            server.kill()
    worker_log = (tmp_path / "worker.log").read_text()
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
