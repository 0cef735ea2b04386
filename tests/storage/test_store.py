"""The results store: schema, idempotent upserts, atomic writes, and many writers at once."""

import multiprocessing
from datetime import UTC, datetime

import duckdb
import pytest

from accel.storage import (
    MIGRATIONS,
    TABLES,
    CheckRecord,
    EnvironmentRecord,
    MeasurementRecord,
    ResultsStore,
    RunRecord,
    SkillRecord,
    StoreBusyError,
    migrate,
    schema_version,
)
from accel.storage.connection import run_transaction


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "results.duckdb")


def _measurement(run_id: str, i: int, p50: float = 1.0) -> MeasurementRecord:
    return MeasurementRecord(
        run_id=run_id,
        skill_id="skill-a",
        scenario="forward",
        batch=1 + i % 4,
        seq=16 * (1 + i // 4),
        status="ok",
        iterations=10,
        p50_ms=p50,
        samples_ms=[p50, p50 * 1.1, p50 * 0.9],
    )


def _schema(path) -> list[tuple]:
    con = duckdb.connect(str(path))
    try:
        return (
            con.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
            ).fetchall()
            + con.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
        )
    finally:
        con.close()


def test_every_table_matches_its_record_model(store):
    con = duckdb.connect(str(store.path))
    try:
        for table in TABLES:
            columns = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                    [table.name],
                ).fetchall()
            ]
            assert columns == table.columns, table.name
    finally:
        con.close()


def test_migrating_twice_changes_nothing(tmp_path):
    path = tmp_path / "r.duckdb"
    assert migrate(path) == [v for v, _, _ in MIGRATIONS]
    before = _schema(path)
    assert migrate(path) == []
    ResultsStore(path)
    assert _schema(path) == before
    assert schema_version(path) == MIGRATIONS[-1][0]


def test_records_round_trip_with_their_json_and_list_fields(store):
    env = EnvironmentRecord(
        host="box",
        cpu="Some CPU",
        logical_cores=2,
        memory_bytes=2**34,
        accelerators=[{"kind": "cuda", "name": "GPU"}],
        libraries={"torch": "2.13.0"},
        profile={"cpu": {"flags": ["avx2"]}},
    )
    env_id = store.record_environment(env)
    assert env_id == env.environment_id and len(env_id) == 16
    run = RunRecord(
        run_id="run-1",
        kind="pipeline",
        trigger="cli",
        params={"targets": ["cpu/torch"]},
        environment_id=env_id,
    )
    store.record_run(run)
    skill = SkillRecord(
        skill_id="skill-a",
        model_ref="m",
        target="cpu/torch",
        hardware="cpu",
        runtime="torch",
        precision="fp32",
        manifest={"inputs": {"input_ids": [-1, -1]}},
    )
    store.record_skill(skill)
    check = CheckRecord(
        run_id="run-1",
        skill_id="skill-a",
        check="parity",
        status="failed",
        max_abs_diff=0.5,
        tolerance=1e-4,
        details={"output": "last_hidden_state"},
    )
    store.record_checks([check])
    store.record_measurements([_measurement("run-1", 0, p50=3.25)])

    assert store.get_environment(env_id).model_dump() == env.model_dump()
    assert store.get_run("run-1").params == {"targets": ["cpu/torch"]}
    assert store.get_skill("skill-a").manifest == skill.manifest
    assert store.checks(run_id="run-1")[0].model_dump() == check.model_dump()
    got = store.measurements(run_id="run-1")[0]
    assert got.samples_ms == [3.25, 3.25 * 1.1, 3.25 * 0.9] and got.p50_ms == 3.25
    assert store.get_run("nope") is None and store.measurements(run_id="nope") == []


def test_the_same_environment_is_one_row(store):
    a = EnvironmentRecord(host="box", libraries={"torch": "2.13.0"})
    b = EnvironmentRecord(host="box", libraries={"torch": "2.13.0"}, recorded_at=datetime(2020, 1, 1, tzinfo=UTC))
    c = EnvironmentRecord(host="box", libraries={"torch": "2.14.0"})
    assert a.environment_id == b.environment_id != c.environment_id
    for env in (a, b, c):
        store.record_environment(env)
    assert store.count("environments") == 2


def test_replaying_writes_adds_no_row_and_keeps_the_latest_values(store):
    store.record_run(RunRecord(run_id="r", kind="benchmark"))
    rows = [_measurement("r", i) for i in range(12)]
    store.record_measurements(rows)
    store.record_measurements(rows)
    store.record_measurements([_measurement("r", 0, p50=9.0)])
    store.record_run(RunRecord(run_id="r", kind="benchmark"))
    assert store.count("measurements") == 12 and store.count("runs") == 1
    assert {m.p50_ms for m in store.measurements("r") if (m.batch, m.seq) == (1, 16)} == {9.0}


def test_finish_run_sets_status_and_time_and_rejects_unknown_runs_and_statuses(store):
    store.record_run(RunRecord(run_id="r", kind="chain", status="running"))
    store.finish_run("r", "failed", "parity mismatch")
    run = store.get_run("r")
    assert (run.status, run.message) == ("failed", "parity mismatch") and run.finished_at is not None
    with pytest.raises(KeyError):
        store.finish_run("missing", "completed")
    with pytest.raises(ValueError):
        store.finish_run("r", "exploded")


def test_one_call_is_one_transaction_so_a_bad_row_lands_nothing(store):
    good = CheckRecord(run_id="r", skill_id="s", check="loads", status="passed")
    bad = CheckRecord.model_construct(**{**good.model_dump(), "check": None})  # violates NOT NULL
    with pytest.raises(duckdb.Error):
        store.record_checks([good, bad])
    assert store.count("checks") == 0


def _writer(path: str, worker: int, count: int) -> None:
    store = ResultsStore(path, timeout_s=120)
    store.record_run(RunRecord(run_id=f"run-{worker}", kind="benchmark"))
    for i in range(count):
        store.record_measurements([_measurement(f"run-{worker}", i, p50=float(i))])


ROWS_EACH = 20  # one transaction each: 80 lock hand-overs between four processes


def _write_from_four_processes(path: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, ROWS_EACH)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=300)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]


def test_four_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.duckdb")
    _write_from_four_processes(path)
    store = ResultsStore(path)
    assert store.count("measurements") == 4 * ROWS_EACH and store.count("runs") == 4
    for w in range(4):
        assert sorted(m.p50_ms for m in store.measurements(f"run-{w}")) == [float(i) for i in range(ROWS_EACH)]
    _write_from_four_processes(path)  # the same writes again, all four at once
    assert store.count("measurements") == 4 * ROWS_EACH


def _read_runs_once(path: str, queue) -> None:
    try:
        queue.put(("read", ResultsStore(path, timeout_s=0.5).count("runs")))
    except StoreBusyError as err:
        queue.put(("busy", str(err)))


def test_another_process_and_a_forked_child_wait_for_the_turn_a_held_store_keeps(tmp_path):
    path = tmp_path / "results.duckdb"
    (tmp_path / "link").symlink_to(tmp_path)
    spelled_otherwise = tmp_path / "link" / "results.duckdb"
    for method in ("spawn", "fork"):  # a fresh process; a child forked while this one holds its turn
        ctx = multiprocessing.get_context(method)
        queue = ctx.Queue()
        with ResultsStore(path, hold=True) as held:
            held.record_run(RunRecord(run_id="r", kind="benchmark"))
            assert ResultsStore(path).count("runs") == 1  # this process's other users share its turn
            count_runs = lambda con: con.execute("SELECT count(*) FROM runs").fetchone()[0]  # noqa: E731
            assert run_transaction(spelled_otherwise, count_runs, 5) == 1  # one turn per file, however spelled
            child = ctx.Process(target=_read_runs_once, args=(str(path), queue))
            child.start()
            kind, said = queue.get(timeout=60)
            child.join(timeout=60)
        assert kind == "busy" and "results.duckdb.lock" in said and "ACCEL_DB_TIMEOUT_S" in said, (method, said)
        child = ctx.Process(target=_read_runs_once, args=(str(path), queue))
        child.start()
        assert queue.get(timeout=60) == ("read", 1), method  # the turn is free once the held store closed
        child.join(timeout=60)


def test_a_store_at_an_older_schema_is_migrated_keeping_its_rows(tmp_path):
    from accel.storage.connection import run_transaction

    path = tmp_path / "old.duckdb"

    def version_one(con):
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL)"
        )
        con.execute(MIGRATIONS[0][2])
        con.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', now())")
        con.execute(
            "INSERT INTO measurements (run_id, skill_id, scenario, batch, seq, status, p50_ms, recorded_at) "
            "VALUES ('r', 's', 'forward', 1, 8, 'ok', 2.5, now())"
        )

    run_transaction(path, version_one, 30)
    assert migrate(path) == [v for v, _, _ in MIGRATIONS[1:]]
    row = ResultsStore(path).measurements("r")[0]
    assert row.p50_ms == 2.5 and row.cv is None and row.details == {}
