"""The aggregate queries on a real DuckDB file seeded through ResultsStore.record_*: exact values.

The seed (shared with tests/api/test_results_api.py): three nightly pipelines P1-P3 a day apart, each
starting one chain per target; bert on four CPU targets and gpt2 on one, two forward shapes each.
- bert cpu/torch (1,16): 10 -> 20 (noisy) -> 12: P3 regressed against P1 (the noisy P2 is no reference).
- bert cpu/openvino: fastest at (1,16) in P3 (2 ms) but that figure is noisy.
- bert cpu/onnxruntime: a standalone test T4 after P3 failed parity.
- gpt2 cpu/torch: P3 (4,16) errored; a generate point is its latest row.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from accel.storage import CheckRecord, MeasurementRecord, ResultsStore, RunRecord, SkillRecord
from accel.storage.queries import (
    ResultFilter,
    candidates,
    ever_measured,
    export_measurements,
    history,
    measured_targets,
    previous_run,
    regressions,
    speedups,
    summary,
)

BERT, GPT2 = "org/bert", "org/gpt2"
BASE = (datetime.now(UTC) - timedelta(days=5)).replace(microsecond=0)
SKILLS = {
    "sk-bert-torch": (BERT, "cpu/torch"),
    "sk-bert-ort": (BERT, "cpu/onnxruntime"),
    "sk-bert-ov": (BERT, "cpu/openvino"),
    "sk-bert-bf16": (BERT, "cpu/torch:bf16"),
    "sk-gpt2-torch": (GPT2, "cpu/torch"),
}
# p50 ms per pipeline (P1, P2, P3), skill and shape (batch, seq)
P50 = {  # recorded in this order within a run, so (1, 16) is each run's latest point
    "sk-bert-torch": {(4, 16): (30.0, 30.5, 30.0), (1, 16): (10.0, 20.0, 12.0)},
    "sk-bert-ort": {(4, 16): (15.0, 15.0, 15.0), (1, 16): (5.0, 5.0, 6.0)},
    "sk-bert-ov": {(4, 16): (10.0, 10.0, 10.0), (1, 16): (3.0, 3.0, 2.0)},
    "sk-bert-bf16": {(4, 16): (24.0, 24.0, 24.0), (1, 16): (8.0, 8.0, 8.0)},
    "sk-gpt2-torch": {(4, 16): (90.0, 90.0, None), (1, 16): (40.0, 41.0, 40.5)},  # None: P3 errored
}
NOISY = {("sk-bert-torch", 1, (1, 16)): "foreign CPU 35%", ("sk-bert-ov", 2, (1, 16)): "foreign CPU 40%"}
CHECKS = ("loads", "finite", "parity")


def run_id(pipeline: int, skill: str | None = None) -> str:
    return f"P{pipeline + 1}" if skill is None else f"P{pipeline + 1}-{skill}"


def seed_results(path: Path) -> ResultsStore:
    """The seed above, in a fresh DuckDB file at `path`."""
    store = ResultsStore(path)
    for skill_id, (model, target) in SKILLS.items():
        hardware, rest = target.split("/")
        runtime, _, precision = rest.partition(":")
        store.record_skill(
            SkillRecord(
                skill_id=skill_id,
                model_ref=model,
                target=target,
                hardware=hardware,
                runtime=runtime,
                precision=precision or "fp32",
                created_at=BASE - timedelta(days=1),
            )
        )
    for p in range(3):
        start = BASE + timedelta(days=p)
        store.record_run(
            RunRecord(run_id=run_id(p), kind="pipeline", status="completed", started_at=start, finished_at=start)
        )
        for k, skill_id in enumerate(SKILLS):
            chain = run_id(p, skill_id)
            at = start + timedelta(minutes=10 * k)
            errored = P50[skill_id][4, 16][p] is None
            store.record_run(
                RunRecord(
                    run_id=chain,
                    kind="chain",
                    status="failed" if errored else "completed",
                    parent_run_id=run_id(p),
                    started_at=at,
                    finished_at=at + timedelta(minutes=5),
                )
            )
            store.record_checks(
                [CheckRecord(run_id=chain, skill_id=skill_id, check=c, status="passed", recorded_at=at) for c in CHECKS]
            )
            rows = []
            for i, ((batch, seq), figures) in enumerate(P50[skill_id].items()):
                p50 = figures[p]
                when = at + timedelta(minutes=1 + i)
                if p50 is None:
                    rows.append(
                        MeasurementRecord(
                            run_id=chain,
                            skill_id=skill_id,
                            scenario="forward",
                            batch=batch,
                            seq=seq,
                            status="error",
                            error="RuntimeError: out of memory",
                            recorded_at=when,
                        )
                    )
                    continue
                reason = NOISY.get((skill_id, p, (batch, seq)))
                rows.append(
                    MeasurementRecord(
                        run_id=chain,
                        skill_id=skill_id,
                        scenario="forward",
                        batch=batch,
                        seq=seq,
                        status="ok",
                        iterations=10,
                        p50_ms=p50,
                        samples_ms=[p50 * 0.98, p50, p50 * 1.02],
                        rounds=3,
                        round_p50_ms=[p50 * 0.99, p50, p50 * 1.01],
                        tokens_per_s=batch * seq * 1000 / p50,
                        samples_per_s=batch * 1000 / p50,
                        mfu=0.01 * batch,
                        peak_rss_bytes=1_000_000 * (p + 1),
                        noisy=reason is not None,
                        noise_reason=reason,
                        recorded_at=when,
                    )
                )
            if skill_id == "sk-gpt2-torch" and p == 2:
                rows.append(
                    MeasurementRecord(
                        run_id=chain,
                        skill_id=skill_id,
                        scenario="generate",
                        batch=1,
                        seq=16,
                        status="ok",
                        p50_ms=100.0,
                        tokens_per_s=160.0,
                        noisy=False,
                        recorded_at=at + timedelta(minutes=4),
                    )
                )
            store.record_measurements(rows)
    # a standalone test of bert on onnxruntime after P3: parity failed
    t4_at = BASE + timedelta(days=2, hours=2)
    store.record_run(RunRecord(run_id="T4", kind="test", status="failed", started_at=t4_at, finished_at=t4_at))
    store.record_checks(
        [
            CheckRecord(
                run_id="T4",
                skill_id="sk-bert-ort",
                check=c,
                status="failed" if c == "parity" else "passed",
                max_abs_diff=0.5 if c == "parity" else None,
                recorded_at=t4_at,
            )
            for c in CHECKS
        ]
    )
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultsStore:
    return seed_results(tmp_path_factory.mktemp("queries") / "results.duckdb")


def _by_target(rows: list[dict]) -> dict[str, dict]:
    return {(r["model_ref"], r["target"]): r for r in rows}


def test_summary_has_the_latest_headline_test_and_run_of_each_model_and_target(store):
    rows, total = summary(store, ResultFilter())
    assert total == 5
    assert [(r["model_ref"], r["target"]) for r in rows] == sorted((m, t) for m, t in SKILLS.values())
    got = _by_target(rows)
    torch = got[BERT, "cpu/torch"]
    assert torch["headline_run_id"] == "P3-sk-bert-torch"
    assert (torch["batch"], torch["seq"], torch["p50_ms"]) == (1, 16, 12.0)
    assert torch["tokens_per_s"] == pytest.approx(16_000 / 12)
    assert torch["samples_per_s"] == pytest.approx(1000 / 12)
    assert torch["mfu"] == pytest.approx(0.01)
    assert (torch["noisy"], torch["noise_reason"]) == (False, None)
    assert (torch["checks_passed"], torch["checks_total"]) == (3, 3)
    assert (torch["last_run_id"], torch["status"]) == ("P3-sk-bert-torch", "completed")
    assert (torch["hardware"], torch["runtime"], torch["precision"]) == ("cpu", "torch", "fp32")

    ov = got[BERT, "cpu/openvino"]
    assert (ov["p50_ms"], ov["noisy"], ov["noise_reason"]) == (2.0, True, "foreign CPU 40%")

    ort = got[BERT, "cpu/onnxruntime"]  # the later standalone test is its latest test and last run
    assert (ort["p50_ms"], ort["headline_run_id"]) == (6.0, "P3-sk-bert-ort")
    assert (ort["test_run_id"], ort["checks_passed"], ort["checks_total"]) == ("T4", 2, 3)
    assert (ort["last_run_id"], ort["status"]) == ("T4", "failed")

    gpt2 = got[GPT2, "cpu/torch"]  # forward stays the headline though a generate point came last
    assert (gpt2["batch"], gpt2["seq"], gpt2["p50_ms"]) == (1, 16, 40.5)
    assert (gpt2["last_run_id"], gpt2["status"]) == ("P3-sk-gpt2-torch", "failed")
    p3 = BASE + timedelta(days=2)
    assert (gpt2["measured_at"], gpt2["last_run_at"]) == (p3 + timedelta(minutes=42), p3 + timedelta(minutes=44))


@pytest.mark.parametrize("recent", [timedelta(0), timedelta(days=3, hours=12), timedelta(days=365)])
@pytest.mark.parametrize("since", [None, BASE + timedelta(days=1, hours=12)])
def test_summary_is_the_same_whatever_part_it_reads_first(store, recent, since):
    # 3.5 days back splits the seed between P2 and P3; bert cpu/onnxruntime's latest ok point is in P3
    where = ResultFilter(since=since)
    assert summary(store, where, recent=recent) == summary(store, where, recent=timedelta(days=30))


def test_summary_reaches_back_for_a_skill_whose_recent_points_failed(tmp_path):
    store = ResultsStore(tmp_path / "results.duckdb")
    now = datetime.now(UTC)
    store.record_skill(
        SkillRecord(skill_id="x", model_ref="m", target="cpu/torch", hardware="cpu", runtime="torch", precision="fp32")
    )
    point = {"skill_id": "x", "scenario": "forward", "batch": 1, "seq": 8}
    store.record_measurements(
        [
            MeasurementRecord(run_id="old", status="ok", p50_ms=3.0, recorded_at=now - timedelta(days=20), **point),
            MeasurementRecord(run_id="new", status="error", error="boom", recorded_at=now - timedelta(days=1), **point),
        ]
    )
    rows, _ = summary(store, ResultFilter())
    assert (rows[0]["p50_ms"], rows[0]["headline_run_id"], rows[0]["last_run_id"]) == (3.0, "old", "new")
    assert summary(store, ResultFilter(), recent=timedelta(days=90)) == (rows, 1)


def test_summary_filters_and_pages(store):
    rows, total = summary(store, ResultFilter(model=BERT, runtime="torch"))
    assert (total, [r["target"] for r in rows]) == (2, ["cpu/torch", "cpu/torch:bf16"])
    rows, total = summary(store, ResultFilter(target="cpu/torch"))
    assert (total, [r["model_ref"] for r in rows]) == (2, [BERT, GPT2])
    rows, total = summary(store, ResultFilter(), limit=2, offset=3)
    assert total == 5
    assert [(r["model_ref"], r["target"]) for r in rows] == [(BERT, "cpu/torch:bf16"), (GPT2, "cpu/torch")]
    assert summary(store, ResultFilter(), limit=2, offset=10) == ([], 5)
    assert summary(store, ResultFilter(hardware="cuda")) == ([], 0)
    # only rows since P3 count: the headline is still P3's, P1 and P2 are gone from view
    rows, total = summary(store, ResultFilter(model=BERT, target="cpu/torch", since=BASE + timedelta(days=1, hours=12)))
    assert (total, rows[0]["p50_ms"], rows[0]["checks_total"]) == (1, 12.0, 3)


def test_compare_gives_the_speedup_of_every_target_over_the_baseline(store):
    rows = speedups(store, BERT, "cpu/torch")
    got = {(r["target"], r["batch"], r["seq"]): r for r in rows}
    assert set(got) == {(t, b, 16) for t in ("cpu/onnxruntime", "cpu/openvino", "cpu/torch:bf16") for b in (1, 4)}
    assert got["cpu/onnxruntime", 1, 16]["speedup"] == pytest.approx(12.0 / 6.0)
    assert got["cpu/torch:bf16", 4, 16]["speedup"] == pytest.approx(30.0 / 24.0)
    ov = got["cpu/openvino", 1, 16]
    assert (ov["speedup"], ov["noisy"], ov["noise_reason"]) == (6.0, True, "target: foreign CPU 40%")
    assert (ov["baseline_p50_ms"], ov["baseline_run_id"], ov["run_id"]) == (12.0, "P3-sk-bert-torch", "P3-sk-bert-ov")
    assert got["cpu/openvino", 4, 16]["noisy"] is False
    # the other way round the noisy side is the baseline
    back = {(r["target"], r["batch"]): r for r in speedups(store, BERT, "cpu/openvino")}
    assert back["cpu/torch", 1]["speedup"] == pytest.approx(2.0 / 12.0)
    assert back["cpu/torch", 1]["noise_reason"] == "baseline: foreign CPU 40%"
    assert speedups(store, BERT, "cuda/torch") == []
    assert measured_targets(store, BERT) == ["cpu/onnxruntime", "cpu/openvino", "cpu/torch", "cpu/torch:bf16"]
    assert measured_targets(store, "org/none") == []


def test_history_marks_regressions_against_the_previous_non_noisy_point(store):
    since = BASE - timedelta(days=1)
    points, total = history(store, BERT, "cpu/torch", "p50_ms", since, batch=1, seq=16)
    assert total == 3
    assert [p["value"] for p in points] == [10.0, 20.0, 12.0]
    assert [p["verdict"] for p in points] == ["first", "inconclusive", "regressed"]
    assert [p["noisy"] for p in points] == [False, True, False]
    assert points[2]["previous"] == 10.0 and points[2]["previous_run_id"] == "P1-sk-bert-torch"
    assert points[2]["ratio"] == pytest.approx(1.2)
    # higher is better for throughput: fewer tokens/s is the regression
    points, _ = history(store, BERT, "cpu/torch", "tokens_per_s", since, batch=1, seq=16)
    assert [p["verdict"] for p in points] == ["first", "inconclusive", "regressed"]
    # both shapes, time order; a change under the threshold is unchanged; a noisy improvement is inconclusive
    points, total = history(store, BERT, "cpu/openvino", "p50_ms", since)
    assert total == 6
    assert [(p["batch"], p["verdict"]) for p in points] == [
        (4, "first"),
        (1, "first"),
        (4, "unchanged"),
        (1, "unchanged"),
        (4, "unchanged"),
        (1, "inconclusive"),
    ]
    assert [p["recorded_at"] for p in points] == sorted(p["recorded_at"] for p in points)
    # peak RSS grew 1 -> 2 -> 3 MB: lower is better, so every later point regressed
    points, _ = history(store, BERT, "cpu/torch:bf16", "peak_rss_bytes", since, batch=4, seq=16)
    assert [p["verdict"] for p in points] == ["first", "regressed", "regressed"]
    # the errored point is no point; the window and paging cut
    points, total = history(store, GPT2, "cpu/torch", "p50_ms", since, scenario="forward", batch=4, seq=16)
    assert (total, [p["value"] for p in points]) == (2, [90.0, 90.0])
    points, total = history(store, BERT, "cpu/torch", "p50_ms", BASE + timedelta(days=1, hours=12))
    assert (total, [p["value"] for p in points]) == (2, [30.0, 12.0])
    points, total = history(store, BERT, "cpu/torch", "p50_ms", since, limit=2, offset=5)
    assert (total, [p["value"] for p in points]) == (6, [12.0])
    assert history(store, BERT, "cpu/torch", "p50_ms", since, limit=2, offset=9) == ([], 6)
    assert ever_measured(store, BERT, "cpu/torch") and not ever_measured(store, BERT, "cuda/torch")
    with pytest.raises(ValueError, match="p50_ms"):
        history(store, BERT, "cpu/torch", "flops; DROP TABLE runs", since)


def test_regressions_default_to_the_previous_run_of_the_same_kind(store):
    assert previous_run(store, "P3") == "P2"
    assert previous_run(store, "P2") == "P1"
    assert previous_run(store, "P1") is None
    assert previous_run(store, "P3-sk-bert-ort") == "P2-sk-bert-ort"  # a chain: the previous chain of that skill
    assert previous_run(store, "T4") is None  # no earlier test run measured anything
    assert previous_run(store, "nope") is None
    points = {(p.model_ref, p.target, p.batch): p for p in regressions(store, "P3", "P2")}
    assert len(points) == 10
    assert points[BERT, "cpu/onnxruntime", 1].change.verdict == "regressed"
    assert points[BERT, "cpu/onnxruntime", 1].change.ratio == pytest.approx(1.2)
    assert points[BERT, "cpu/torch", 1].change.verdict == "inconclusive"  # P2's point is noisy
    assert points[BERT, "cpu/torch", 1].noise_reason == "old: foreign CPU 35%"
    assert points[BERT, "cpu/openvino", 1].change.verdict == "inconclusive"
    assert points[BERT, "cpu/torch:bf16", 4].change.verdict == "unchanged"
    assert points[GPT2, "cpu/torch", 4].change.verdict == "inconclusive"  # errored in P3
    with pytest.raises(KeyError):
        regressions(store, "T4", "P3")


def test_recommend_ranks_only_tested_and_quiet_targets(store):
    rows = candidates(store, BERT, 1, 16)
    assert [(r["target"], r["rank"]) for r in rows] == [
        ("cpu/torch:bf16", 1),
        ("cpu/torch", 2),
        ("cpu/onnxruntime", None),
        ("cpu/openvino", None),
    ]
    assert (rows[0]["p50_ms"], rows[1]["p50_ms"]) == (8.0, 12.0)
    assert rows[2]["excluded_reason"] == "latest test T4: 2/3 checks passed (parity failed)"
    assert rows[3]["excluded_reason"] == "noisy: foreign CPU 40%"
    rows = candidates(store, GPT2, 4, 16)
    assert [(r["target"], r["rank"]) for r in rows] == [("cpu/torch", None)]
    assert rows[0]["excluded_reason"] == "latest measurement error: RuntimeError: out of memory"
    assert candidates(store, BERT, 2, 16) == []
    assert candidates(store, GPT2, 1, 16, scenario="generate")[0]["rank"] == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_writes_every_selected_row_in_each_format(store, tmp_path, fmt):
    out = tmp_path / f"rows.{fmt}"
    n = export_measurements(store, ResultFilter(model=BERT, target="cpu/openvino"), fmt, out)
    assert n == 6
    reader = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json"}[fmt]
    con = duckdb.connect()
    try:
        got = con.execute(
            f"SELECT model_ref, target, run_id, batch, p50_ms, noisy, noise_reason FROM {reader}(?)", [str(out)]
        ).fetchall()
    finally:
        con.close()
    assert got[-1] == (BERT, "cpu/openvino", "P3-sk-bert-ov", 1, 2.0, True, "foreign CPU 40%")
    assert [r[4] for r in got] == [10.0, 3.0, 10.0, 3.0, 10.0, 2.0]
    if fmt == "json":
        assert len(json.loads(out.read_text())) == 6  # one JSON document, an array
    if fmt == "csv":
        assert io.StringIO(out.read_text()).readline().startswith("model_ref,target,hardware,runtime,precision,run_id")


def test_export_pages_and_filters(store, tmp_path):
    out = tmp_path / "rows.csv"
    assert export_measurements(store, ResultFilter(), "csv", out) == 31
    assert export_measurements(store, ResultFilter(), "csv", out, limit=5, offset=28) == 3
    assert export_measurements(store, ResultFilter(hardware="cuda"), "csv", out) == 0
    with pytest.raises(ValueError, match="csv, parquet, json"):
        export_measurements(store, ResultFilter(), "xlsx", out)
