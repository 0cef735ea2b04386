"""`accel results flush`: records that waited through an API outage are sent, with counts; what is left says why."""

from __future__ import annotations

import json

import pytest

from accel.cli.main import run
from accel.settings import get_settings
from accel.storage import MeasurementRecord, ResultsStore, RunRecord
from accel.tasks.results_store import open_results_store, outbox_path
from tests.storage.api_server import ApiServer


def accel(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_flush_sends_what_waited_and_says_what_is_left(capsys, tmp_path, monkeypatch, accel_home):
    api = ApiServer(tmp_path / "api" / "results.duckdb", tmp_path / "api-home")
    monkeypatch.setenv("ACCEL_RESULTS", api.url)  # not started yet: every write waits in the outbox
    monkeypatch.setenv("ACCEL_API_KEY", api.key)
    get_settings.cache_clear()
    with open_results_store() as store:
        store.record_run(RunRecord(run_id="r1", kind="benchmark"))
        store.record_measurements(
            [
                MeasurementRecord(run_id="r1", skill_id="s", scenario="forward", batch=b, seq=8, status="ok")
                for b in (1, 8)
            ]
        )
    code, out, _ = accel(capsys, "results", "flush", "--json")
    report = json.loads(out)
    assert code == 1 and (report["waiting_batches"], report["waiting_records"], report["sent_records"]) == (2, 3, 0)
    assert "Connect" in report["reason"] and report["outbox"] == str(outbox_path())

    with api:
        code, out, _ = accel(capsys, "results", "flush", "--json")
        report = json.loads(out)
        assert code == 0 and (report["sent_batches"], report["sent_records"], report["waiting_records"]) == (2, 3, 0)
        code, out, _ = accel(capsys, "results", "flush")  # nothing left: a table for people, exit 0
        assert code == 0 and "sent     0 record(s)" in out and "waiting  0 record(s)" in out
    assert ResultsStore(api.results).count("measurements") == 2
    assert not (accel_home / "results.duckdb").exists()


def test_flush_without_a_url_says_results_go_to_the_file(capsys, accel_home):
    code, out, _ = accel(capsys, "results", "flush")
    assert code == 0 and "nothing waits" in out and str(accel_home / "results.duckdb") in out


def test_compare_and_up_refuse_a_results_url_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("ACCEL_RESULTS", "http://127.0.0.1:9")
    get_settings.cache_clear()
    code, out, err = accel(capsys, "compare", "a", "b")
    assert code == 2 and out == "" and "accel compare reads the DuckDB results file" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = accel(capsys, "up", "--no-workers")
    assert code == 2 and "accel up runs the API that writes the results file itself" in err
