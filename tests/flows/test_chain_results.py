"""A chain's outcome read back from its rows (`chain_result`), from the file or the accel API: what the chain
itself answered, and what the pipeline now reports for every chain, wherever it ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accel.flows.results import chain_result
from accel.settings import get_settings
from accel.storage import CheckRecord, HttpResultsStore, MeasurementRecord, ResultsStore, RunRecord, SkillRecord
from tests.flows.test_flows import QUICK  # the one short benchmark the flow tests share
from tests.storage.api_server import ApiServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def chain_run(store, run_id: str, status: str, message: str | None) -> None:
    store.record_run(RunRecord(run_id=run_id, kind="chain", params={"model": "tiny/bert", "target": "cpu/torch"}))
    store.finish_run(run_id, status, message)


def record_skill(store) -> None:
    store.record_skill(
        SkillRecord(
            skill_id="s1",
            model_ref="tiny/bert",
            target="cpu/torch",
            hardware="cpu",
            runtime="torch",
            precision="fp32",
            path="/skills/s1",
        )
    )


def record_checks(store, run_id: str, failed: str | None = None) -> None:
    store.record_checks(
        [
            CheckRecord(run_id=run_id, skill_id="s1", check=name, status="failed" if name == failed else "passed")
            for name in ("loads", "forward_shapes", "finite", "parity")
        ]
    )


def point(run_id: str, scenario: str, batch: int, at: int, **fields) -> MeasurementRecord:
    return MeasurementRecord(
        run_id=run_id,
        skill_id="s1",
        scenario=scenario,
        batch=batch,
        seq=8,
        recorded_at=T0 + timedelta(seconds=at),
        **{"status": "ok", **fields},
    )


def record_outcomes(store) -> None:
    """Rows as a chain records them: a passed one, a failed test, a failed generation, a refused benchmark."""
    chain_run(store, "passed", "completed", None)
    record_skill(store)
    record_checks(store, "passed")
    store.record_measurements(
        [  # measured in this order: batch 8 first, then batch 1 (noisy), then a generate point
            point("passed", "forward", 8, 1, p50_ms=4.0, tokens_per_s=16000.0, details={"mfu_withheld": "contended"}),
            point("passed", "forward", 1, 2, p50_ms=1.0, noisy=True, noise_reason="others used 40% of the CPU"),
            point("passed", "generate", 1, 3, p50_ms=9.0),
        ]
    )
    chain_run(store, "test-failed", "failed", "tests failed: parity (failed); benchmark skipped")
    record_checks(store, "test-failed", failed="parity")
    store.record_measurements([point("test-failed", "forward", 1, 4, status="skipped", error="parity")])
    chain_run(store, "not-generated", "failed", "generation failed: no exporter matched the reference")
    chain_run(store, "refused", "failed", "benchmark refused: --seq 100000 is past the maximum 512")
    record_checks(store, "refused")


def assert_outcomes(store) -> None:
    passed = chain_result(store, "passed")
    assert (passed.status, passed.stage, passed.model, passed.target) == ("passed", "done", "tiny/bert", "cpu/torch")
    assert (passed.skill_id, passed.skill_path, passed.checks_passed, passed.checks_total) == ("s1", "/skills/s1", 4, 4)
    assert passed.message == "4/4 checks passed, 3 points measured"
    # The headline is the first forward point measured, with its flags; the noisy count covers every point.
    assert (passed.batch, passed.seq, passed.p50_ms, passed.tokens_per_s) == (8, 8, 4.0, 16000.0)
    assert (passed.noisy, passed.noise_reason, passed.mfu_withheld) == (False, None, "contended")
    assert (passed.noisy_points, passed.measurements_ok, passed.measurements_total) == (1, 3, 3)

    failed = chain_result(store, "test-failed")
    assert (failed.status, failed.stage, failed.checks_passed, failed.checks_total) == ("failed", "test", 3, 4)
    assert failed.message.startswith("tests failed: parity") and failed.measurements_total == 0
    assert failed.p50_ms is None

    not_generated = chain_result(store, "not-generated")
    assert (not_generated.stage, not_generated.skill_id, not_generated.checks_total) == ("generate", None, None)
    assert not_generated.message.startswith("generation failed")

    refused = chain_result(store, "refused")
    assert (refused.status, refused.stage, refused.measurements_total) == ("failed", "benchmark", 0)
    with pytest.raises(KeyError):
        chain_result(store, "never-started")


def test_chain_result_reads_each_outcome_from_the_file_and_through_the_api(tmp_path):
    file = ResultsStore(tmp_path / "results.duckdb")
    record_outcomes(file)
    assert_outcomes(file)
    with (
        ApiServer(tmp_path / "api.duckdb", tmp_path / "api-home") as api,
        HttpResultsStore(api.url, outbox=tmp_path / "outbox.jsonl", api_key=api.key) as remote,
    ):
        record_outcomes(remote)
        assert_outcomes(remote)
        assert chain_result(remote, "passed") == chain_result(file, "passed")


def test_chain_result_is_what_a_real_chain_answered(prefect_api, tiny_models, shared_skills):
    from accel.flows.chain import chain
    from accel.flows.runs import store

    for target in ("cpu/onnxruntime", "mps/torch"):  # one passes; one is refused at generation
        answered = chain(str(tiny_models["bert"]), target, level="basic", bench=QUICK)
        assert chain_result(store(), answered.run_id) == answered


def test_a_pipeline_sending_results_to_the_api_reports_its_chains_from_there(
    prefect_api, tiny_models, shared_skills, tmp_path, monkeypatch, accel_home
):
    from accel.flows.pipeline import pipeline

    with ApiServer(tmp_path / "api" / "results.duckdb", tmp_path / "api-home") as api:
        monkeypatch.setenv("ACCEL_RESULTS", api.url)
        monkeypatch.setenv("ACCEL_API_KEY", api.key)
        get_settings.cache_clear()
        result = pipeline(
            models=[str(tiny_models["bert"])], targets=["cpu/onnxruntime", "mps/torch"], level="basic", bench=QUICK
        )
        file = ResultsStore(api.results)
        passed, refused = result.results
        assert passed.status == "passed" and passed.checks_passed == passed.checks_total == 4 and passed.p50_ms > 0
        assert refused.status == "failed" and "generation failed" in refused.message
        for chain in result.results:
            assert chain_result(file, chain.run_id) == chain
            assert file.get_run(chain.run_id).parent_run_id == result.run_id
        assert file.get_run(result.run_id).status == "failed"
    assert not (accel_home / "results.duckdb").exists()  # every row went to the API's file


def test_reconcile_closes_a_dead_chains_row_through_the_api(prefect_api, tmp_path):
    import uuid

    from accel.flows.runs import reconcile_runs

    gone, fresh = str(uuid.uuid4()), str(uuid.uuid4())  # no flow run of Prefect has these ids
    with (
        ApiServer(tmp_path / "api.duckdb", tmp_path / "api-home") as api,
        HttpResultsStore(api.url, outbox=tmp_path / "outbox.jsonl", api_key=api.key) as remote,
    ):
        remote.record_run(RunRecord(run_id=gone, kind="chain", started_at=datetime.now(UTC) - timedelta(hours=2)))
        remote.record_run(RunRecord(run_id=fresh, kind="chain"))  # too young to judge
        assert reconcile_runs(remote) == [gone]
        file = ResultsStore(api.results)
        assert file.get_run(gone).status == "crashed" and "no record" in file.get_run(gone).message
        assert file.get_run(fresh).status == "running"
