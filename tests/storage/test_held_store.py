"""`ResultsStore(..., hold=True)`: one connection held for the store's life (the API's mode), with the same
one-transaction-per-call guarantees as the default short-lived connections, and the file freed by close()."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from accel.storage import MeasurementRecord, RecordBatch, ResultsStore, RunFinish, RunRecord
from accel.storage.connection import StoreClosedError
from accel.storage.store import RecordsRejectedError

# Opens the file once, with no retry: "locked" while another process holds it, else the number of runs.
PROBE = """
import sys, duckdb
try:
    con = duckdb.connect(sys.argv[1])
except duckdb.IOException as err:
    print("locked" if "lock" in str(err).lower() else f"error {err}")
else:
    print(con.execute("SELECT count(*) FROM runs").fetchone()[0])
"""


def probe(path: Path) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60).stdout


def point(run_id: str, batch: int = 1, seq: int = 8) -> MeasurementRecord:
    return MeasurementRecord(run_id=run_id, skill_id="s", scenario="forward", batch=batch, seq=seq, status="ok")


@pytest.fixture
def held(tmp_path):
    with ResultsStore(tmp_path / "results.duckdb", timeout_s=20, hold=True) as store:
        yield store


def test_a_held_store_writes_reads_and_frees_the_file_on_close(tmp_path):
    path = tmp_path / "results.duckdb"
    with ResultsStore(path, hold=True) as store:
        assert repr(store).endswith("hold=True)")
        store.record_run(RunRecord(run_id="r1", kind="benchmark"))
        store.record_measurements([point("r1", b) for b in (1, 4)])
        store.finish_run("r1", "completed")
        assert store.get_run("r1").status == "completed" and store.count("measurements") == 2
        assert [m.batch for m in store.measurements(run_id="r1")] == [1, 4]
        assert probe(path).strip() == "locked"  # the point: no other process opens the file meanwhile
        # in this process a plain store shares the held database instance (DuckDB's instance cache)
        assert ResultsStore(path).get_run("r1").status == "completed"
    assert probe(path).strip() == "1"
    with pytest.raises(StoreClosedError):
        store.get_run("r1")
    store.close()  # twice is harmless


def test_apply_on_a_held_store_is_still_all_or_nothing(held):
    held.record_run(RunRecord(run_id="known", kind="chain"))
    unknown_run = RecordBatch(measurements=[point("known")], finished=[RunFinish(run_id="nope", status="completed")])
    with pytest.raises(KeyError):
        held.apply(unknown_run)
    too_big = RecordBatch(runs=[RunRecord(run_id="r2", kind="chain")], measurements=[point("r2", batch=2**40)])
    with pytest.raises(RecordsRejectedError):
        held.apply(too_big)
    assert held.count("measurements") == 0 and held.get_run("r2") is None
    # and the connection is fine afterwards: the next batch lands whole
    done = held.apply(RecordBatch(measurements=[point("known")], finished=[RunFinish(run_id="known", status="failed")]))
    assert done.measurements == 1 and held.get_run("known").status == "failed"


def test_threads_reading_and_writing_a_held_store_at_once_lose_nothing(held):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                held.apply(
                    RecordBatch(runs=[RunRecord(run_id=f"w{n}-{i}", kind="chain")], measurements=[point("x", n, i)])
                )
        except BaseException as err:
            errors.append(err)

    def reader() -> None:
        # each batch is one run and one point, in one transaction: every snapshot has as many of each
        try:
            for _ in range(50):
                [seen] = held.query(
                    "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM measurements) AS m"
                )
                assert seen["runs"] == seen["m"], seen
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert held.count("runs") == 200 and held.count("measurements") == 200
    assert {(m.batch, m.seq) for m in held.measurements(run_id="x")} == {(n, i) for n in range(4) for i in range(50)}
