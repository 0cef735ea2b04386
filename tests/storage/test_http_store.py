"""The results store over HTTP, for real: the API on a loopback port writing its DuckDB file, an outage in
the middle (records wait in the outbox, the write returns), the API back (replayed in order, every row once)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from accel.settings import get_settings
from accel.storage import (
    CheckRecord,
    EnvironmentRecord,
    HttpResultsStore,
    MeasurementRecord,
    RecordBatch,
    ResultsRefusedError,
    ResultsStore,
    RunRecord,
    SkillRecord,
)
from accel.tasks.errors import ServiceUnavailableError
from accel.tasks.results_store import open_results_store, outbox_path
from tests.storage.api_server import ApiServer, bearer, free_port


def skill(skill_id: str = "s1") -> SkillRecord:
    return SkillRecord(
        skill_id=skill_id,
        model_ref="tiny/bert",
        target="cpu/onnxruntime",
        hardware="cpu",
        runtime="onnxruntime",
        precision="fp32",
        path=f"/skills/{skill_id}",
    )


def checks(run_id: str, skill_id: str = "s1") -> list[CheckRecord]:
    return [CheckRecord(run_id=run_id, skill_id=skill_id, check=name, status="passed") for name in ("loads", "parity")]


def measurement(run_id: str, batch: int, skill_id: str = "s1") -> MeasurementRecord:
    return MeasurementRecord(
        run_id=run_id,
        skill_id=skill_id,
        scenario="forward",
        batch=batch,
        seq=8,
        status="ok",
        p50_ms=1.5 * batch,
        samples_ms=[1.4, 1.5, 1.6],
        round_p50_ms=[1.5],
        details={"mfu_withheld": "peak probe contended"},
    )


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path / "api" / "results.duckdb", tmp_path / "api-home").start()
    yield server
    server.stop()


@pytest.fixture
def remote(api, monkeypatch) -> HttpResultsStore:
    """The results store of settings that say ACCEL_RESULTS=<the API's URL>."""
    monkeypatch.setenv("ACCEL_RESULTS", api.url)
    monkeypatch.setenv("ACCEL_API_KEY", api.key)  # as `accel up` hands its workers
    get_settings.cache_clear()
    store = open_results_store()
    assert isinstance(store, HttpResultsStore)
    yield store
    store.close()


def local_duckdb_files(home) -> list:
    return sorted(home.rglob("*.duckdb")) if home.exists() else []


def counts(path) -> dict[str, int]:
    store = ResultsStore(path)
    return {t: store.count(t) for t in ("environments", "runs", "skills", "checks", "measurements")}


def test_rows_sent_through_an_outage_land_once_each_in_the_apis_file(api, remote, accel_home, caplog):
    env = EnvironmentRecord(host="worker-1", cpu="test cpu", logical_cores=2)
    assert remote.record_environment(env) == env.environment_id
    remote.record_run(RunRecord(run_id="r1", kind="chain", params={"model": "m", "target": "cpu/onnxruntime"}))
    remote.record_skill(skill())
    remote.record_checks(checks("r1"))
    remote.record_measurements([measurement("r1", 1)])
    assert counts(api.results) == {"environments": 1, "runs": 1, "skills": 1, "checks": 2, "measurements": 1}

    api.stop()
    with caplog.at_level(logging.WARNING, logger="accel.results"):
        remote.record_run(RunRecord(run_id="r2", kind="benchmark", parent_run_id="r1"))
        remote.record_measurements([measurement("r2", 2), measurement("r2", 4)])
        remote.finish_run("r2", "completed")
        remote.finish_run("r1", "failed", "the benchmark of r2 was slow")
    assert "queued in" in caplog.text and str(outbox_path()) in caplog.text
    assert remote.flush().waiting_batches == 4  # in the order they were written
    assert counts(api.results)["runs"] == 1  # nothing reached the file
    assert local_duckdb_files(accel_home) == []  # and nothing went to a local file instead
    with pytest.raises(ServiceUnavailableError, match=f"the accel API at {api.url} does not answer"):
        remote.get_run("r1")

    api.start()  # same port, same file
    remote.record_checks(checks("r2"))  # replays the outbox first, then sends its own
    assert not outbox_path().exists() or outbox_path().read_text() == ""
    assert counts(api.results) == {"environments": 1, "runs": 2, "skills": 1, "checks": 4, "measurements": 3}
    file = ResultsStore(api.results)
    r1, r2 = file.get_run("r1"), file.get_run("r2")
    assert (r1.status, r1.message) == ("failed", "the benchmark of r2 was slow")
    assert r2.status == "completed" and r2.parent_run_id == "r1" and r2.finished_at is not None
    assert local_duckdb_files(accel_home) == []

    # Replaying a batch again (a send that timed out after the API applied it) duplicates nothing.
    again = RecordBatch(measurements=[measurement("r2", 2)], finished=[{"run_id": "r2", "status": "completed"}])
    assert remote.apply(again).measurements == 1 and remote.apply(again).finished == 1
    assert counts(api.results)["measurements"] == 3

    # Reads: the run, what it started, and their rows.
    family = remote.run_family("r1")
    assert [r.run_id for r in family.descendants] == ["r2"]
    assert {s.skill_id for s in family.skills} == {"s1"}
    assert len(family.checks) == 4 and len(family.measurements) == 3
    assert remote.get_run("r2").status == "completed"
    assert [c.check for c in remote.checks("r1")] == ["loads", "parity"]
    assert sorted(m.batch for m in remote.measurements("r2")) == [2, 4]
    assert remote.measurements("r2")[0].details == {"mfu_withheld": "peak probe contended"}
    assert remote.get_run("nope") is None
    assert [r.run_id for r in remote.list_runs(kind="benchmark")] == ["r2"]
    assert {r.run_id for r in remote.list_runs()} == {"r1", "r2"} and remote.list_runs(status="running") == []
    rows = remote.run_measurements("r1")
    assert {(r["model_ref"], r["target"], r["batch"]) for r in rows} == {
        ("tiny/bert", "cpu/onnxruntime", b) for b in (1, 2, 4)
    }


def test_the_api_refusing_records_is_an_error_never_queued(api, remote):
    with pytest.raises(ResultsRefusedError, match="422") as refused:
        remote.finish_run("never-recorded", "completed")
    assert "never-recorded" in refused.value.detail
    assert remote.flush().waiting_batches == 0 and not outbox_path().exists()
    # A row the record models refuse: 422 JSON naming the field, and nothing written.
    bad = {"runs": [{"run_id": "x", "kind": "chain", "status": "exploded"}]}
    answer = httpx.post(f"{api.url}/api/results/ingest", json=bad, headers=bearer(api.key), timeout=10)
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
    assert "status" in answer.json()["detail"]
    assert counts(api.results)["runs"] == 0
    missing = httpx.get(f"{api.url}/api/results/runs/nope", headers=bearer(api.key), timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "run_not_found"


def test_a_queued_batch_the_api_refuses_on_replay_is_set_aside_with_the_reason(api, remote):
    api.stop()
    remote.finish_run("never-recorded", "completed")  # queued: the API cannot say yet that it is refused
    remote.record_run(RunRecord(run_id="r1", kind="chain"))
    api.start()
    report = remote.flush()
    assert (report.sent_batches, report.rejected_batches, report.waiting_batches) == (1, 1, 0)
    assert "never-recorded" in report.reason
    [entry] = [json.loads(line) for line in remote.outbox.rejected_path.read_text().splitlines()]
    assert entry["status"] == 422 and "never-recorded" in entry["batch"]
    assert ResultsStore(api.results).get_run("r1") is not None


def test_an_unreachable_url_never_becomes_a_local_file(accel_home, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("ACCEL_RESULTS", url)
    get_settings.cache_clear()
    store = open_results_store()
    assert isinstance(store, HttpResultsStore) and store.url == url
    store.record_run(RunRecord(run_id="r1", kind="chain"))
    store.record_measurements([measurement("r1", 1)])
    lines = outbox_path().read_text().splitlines()
    assert [len(RecordBatch.model_validate_json(line).measurements) for line in lines] == [0, 1]
    assert local_duckdb_files(accel_home) == []
    with pytest.raises(ServiceUnavailableError):
        store.measurements("r1")


def test_two_processes_queueing_at_once_never_interleave_lines(accel_home, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    script = f"""
import sys
from accel.storage import HttpResultsStore, MeasurementRecord
store = HttpResultsStore({url!r}, outbox={str(accel_home / "outbox" / "results.jsonl")!r})
for i in range(25):
    store.record_measurements([MeasurementRecord(run_id=sys.argv[1], skill_id="s", scenario="forward", batch=i + 1,
                                                 seq=8, status="ok", samples_ms=[0.5] * 2000)])
"""
    writers = [subprocess.Popen([sys.executable, "-c", script, f"run-{n}"]) for n in range(2)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    batches = [RecordBatch.model_validate_json(line) for line in outbox_path().read_text().splitlines()]
    assert len(batches) == 50
    for n in range(2):  # each writer's batches are whole and in its own order
        mine = [b.measurements[0].batch for b in batches if b.measurements[0].run_id == f"run-{n}"]
        assert mine == list(range(1, 26))


def test_the_embedded_default_is_the_duckdb_file(accel_home):
    store = open_results_store()
    assert isinstance(store, ResultsStore) and store.path == accel_home / "results.duckdb"
    store.record_run(RunRecord(run_id="r1", kind="chain", started_at=datetime.now(UTC)))
    assert store.get_run("r1").kind == "chain"


def test_an_api_without_ingest_is_an_error_and_what_waits_stays_queued(api, tmp_path):
    wrong = HttpResultsStore(api.url + "/not-here", outbox=tmp_path / "outbox" / "results.jsonl", api_key=api.key)
    with pytest.raises(ResultsRefusedError, match="HTTP 404"):
        wrong.record_run(RunRecord(run_id="r1", kind="chain"))
    assert not wrong.outbox.path.exists()  # refused: raised, not queued
    api.stop()
    wrong.record_run(RunRecord(run_id="r2", kind="chain"))  # the API is away: queued
    api.start()
    with pytest.raises(ResultsRefusedError, match="HTTP 404"):
        wrong.flush()  # a wrong URL or an old API refuses everything: said, and nothing thrown away
    assert len(wrong.outbox.path.read_text().splitlines()) == 1 and wrong.outbox.rejected() == 0
    wrong.close()


def test_a_worker_without_a_valid_key_is_refused_in_one_clear_error(api, tmp_path):
    for key in (None, api.key + "x"):
        store = HttpResultsStore(api.url, outbox=tmp_path / f"outbox-{key is None}.jsonl", api_key=key)
        with pytest.raises(ResultsRefusedError, match="HTTP 401") as refused:
            store.record_run(RunRecord(run_id="r1", kind="chain"))
        assert "API key" in refused.value.detail
        store.close()
    assert ResultsStore(api.results).get_run("r1") is None
