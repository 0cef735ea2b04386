"""GET /api/results/...: the aggregates over HTTP, in-process, on a real seeded DuckDB file (no Prefect needed)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import duckdb
import pytest
from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.settings import Settings
from tests.storage.api_server import bearer, issue_key
from tests.storage.test_queries import BASE, BERT, GPT2, seed_results

UNREACHABLE_PREFECT = "http://127.0.0.1:9/api"  # these routes never ask Prefect


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("results-api")
    seed_results(home / "results.duckdb")
    settings = Settings(home=home, results=str(home / "results.duckdb"), prefect_api_url=UNREACHABLE_PREFECT)
    headers = bearer(issue_key(home, "read"))
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=headers) as client:
        yield client


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    return body


def test_summary(client):
    body = client.get("/api/results/summary").json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)
    rows = {(r["model_ref"], r["target"]): r for r in body["rows"]}
    ov = rows[BERT, "cpu/openvino"]
    assert (ov["p50_ms"], ov["batch"], ov["seq"], ov["noisy"], ov["noise_reason"]) == (
        2.0,
        1,
        16,
        True,
        "foreign CPU 40%",
    )
    ort = rows[BERT, "cpu/onnxruntime"]
    assert (ort["checks_passed"], ort["checks_total"], ort["last_run_id"], ort["status"]) == (2, 3, "T4", "failed")
    assert "path" not in ov and "skill_id" not in ov

    page = client.get("/api/results/summary", params={"limit": 2, "offset": 1, "runtime": "torch"}).json()
    assert (page["total"], [r["target"] for r in page["rows"]]) == (3, ["cpu/torch:bf16", "cpu/torch"])
    assert page["next_offset"] is None  # rows 1-2 of 0-2: the last page
    first = client.get("/api/results/summary", params={"limit": 2, "runtime": "torch"}).json()
    assert first["next_offset"] == 2
    # a target in any accepted spelling is matched as recorded
    fp32 = client.get("/api/results/summary", params={"target": "cpu/pytorch:fp32", "model": GPT2}).json()
    assert [r["p50_ms"] for r in fp32["rows"]] == [40.5]
    since = (BASE + timedelta(days=2, hours=1)).isoformat()
    late = client.get("/api/results/summary", params={"since": since}).json()
    assert [(r["target"], r["p50_ms"], r["checks_total"]) for r in late["rows"]] == [("cpu/onnxruntime", None, 3)]
    assert client.get("/api/results/summary", params={"days": 1}).json() == {
        "total": 0,
        "limit": 100,
        "offset": 0,
        "next_offset": None,
        "rows": [],
    }


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"target": "cpu/tensorflow"}, "onnxruntime"),
        ({"hardware": "tpu"}, "'cuda'"),
        ({"runtime": "jax"}, "'openvino'"),
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"days": 0}, "days"),
        ({"since": "yesterday"}, "since"),
        ({"offset": 2**63}, "offset"),
    ],
)
def test_summary_refuses_bad_filters_naming_what_is_accepted(client, params, named):
    assert named in _error(client.get("/api/results/summary", params=params), 422)["detail"]


def test_compare(client):
    body = client.get("/api/results/compare", params={"model": BERT, "baseline": "cpu/torch"}).json()
    assert (body["model"], body["baseline"], len(body["points"])) == (BERT, "cpu/torch", 6)
    got = {(p["target"], p["batch"]): p for p in body["points"]}
    assert got["cpu/onnxruntime", 1]["speedup"] == pytest.approx(2.0)
    assert (got["cpu/openvino", 1]["speedup"], got["cpu/openvino", 1]["noisy"]) == (6.0, True)
    assert got["cpu/openvino", 1]["noise_reason"] == "target: foreign CPU 40%"
    assert got["cpu/torch:bf16", 4]["speedup"] == pytest.approx(1.25)
    # the default baseline is cpu/torch
    assert client.get("/api/results/compare", params={"model": BERT}).json() == body

    assert "org/none" in _error(client.get("/api/results/compare", params={"model": "org/none"}), 404)["detail"]
    missing = _error(client.get("/api/results/compare", params={"model": BERT, "baseline": "cuda/torch"}), 404)
    assert "cpu/onnxruntime, cpu/openvino, cpu/torch, cpu/torch:bf16" in missing["detail"]
    alone = _error(client.get("/api/results/compare", params={"model": GPT2}), 404)
    assert "only on the baseline" in alone["detail"]
    malformed = _error(client.get("/api/results/compare", params={"model": BERT, "baseline": "gpu"}), 422)
    assert "rocm" in malformed["detail"]
    _error(client.get("/api/results/compare"), 422)


def test_history(client):
    params = {"model": BERT, "target": "cpu/torch", "batch": 1, "seq": 16}
    body = client.get("/api/results/history", params=params).json()
    assert (body["metric"], body["higher_is_better"], body["threshold"], body["total"]) == ("p50_ms", False, 0.05, 3)
    points = body["points"]
    assert [(p["value"], p["noisy"], p["verdict"], p["regressed"]) for p in points] == [
        (10.0, False, "first", False),
        (20.0, True, "inconclusive", False),
        (12.0, False, "regressed", True),
    ]
    assert points[1]["noise_reason"] == "foreign CPU 35%"
    throughput = client.get("/api/results/history", params={**params, "metric": "mfu"}).json()
    assert [p["verdict"] for p in throughput["points"]] == ["first", "inconclusive", "unchanged"]
    assert client.get("/api/results/history", params={**params, "days": 1}).json()["points"] == []

    bad = _error(client.get("/api/results/history", params={**params, "metric": "flops"}), 422)["detail"]
    assert all(m in bad for m in ("p50_ms", "tokens_per_s", "samples_per_s", "mfu", "peak_rss_bytes"))
    nothing = _error(client.get("/api/results/history", params={**params, "target": "cuda/torch"}), 404)
    assert "cuda/torch" in nothing["detail"]
    _error(client.get("/api/results/history", params={"model": BERT}), 422)


def _point(body: dict, model: str, target: str, batch: int) -> dict:
    return next(
        p
        for p in body["points"]
        if (p["model_ref"], p["target"], p["scenario"], p["batch"]) == (model, target, "forward", batch)
    )


def test_regressions(client):
    body = client.get("/api/results/regressions", params={"run": "P3"}).json()
    assert (body["run"], body["baseline"], body["baseline_given"]) == ("P3", "P2", False)
    assert body["counts"] == {"improved": 0, "regressed": 1, "unchanged": 6, "inconclusive": 4}
    regressed = [p for p in body["points"] if p["verdict"] == "regressed"]
    assert [(p["target"], p["batch"], p["old_p50_ms"], p["new_p50_ms"]) for p in regressed] == [
        ("cpu/onnxruntime", 1, 5.0, 6.0)
    ]
    noisy = _point(body, BERT, "cpu/torch", 1)
    assert (noisy["verdict"], noisy["noisy"], noisy["noise_reason"]) == ("inconclusive", True, "old: foreign CPU 35%")

    given = client.get("/api/results/regressions", params={"run": "P3", "baseline": "P1"}).json()
    assert (given["baseline"], given["baseline_given"]) == ("P1", True)
    torch = _point(given, BERT, "cpu/torch", 1)
    assert (torch["verdict"], torch["ratio"]) == ("regressed", pytest.approx(1.2))

    assert "nope" in _error(client.get("/api/results/regressions", params={"run": "nope"}), 404)["detail"]
    assert "baseline=" in _error(client.get("/api/results/regressions", params={"run": "P1"}), 404)["detail"]
    no_rows = _error(client.get("/api/results/regressions", params={"run": "T4", "baseline": "P3"}), 404)
    assert no_rows["error"] == "run_not_found" and "T4" in no_rows["detail"]
    assert ".duckdb" not in no_rows["detail"]  # no local path leaks


def test_recommend(client):
    body = client.get("/api/results/recommend", params={"model": BERT, "batch": 1, "seq": 16}).json()
    assert (body["best"]["target"], body["best"]["p50_ms"]) == ("cpu/torch:bf16", 8.0)
    assert (body["runner_up"]["target"], body["margin"]) == ("cpu/torch", pytest.approx(1.5))
    assert {c["target"]: c["excluded_reason"] for c in body["excluded"]} == {
        "cpu/onnxruntime": "latest test T4: 2/3 checks passed (parity failed)",
        "cpu/openvino": "noisy: foreign CPU 40%",
    }
    assert all(c["rank"] is None for c in body["excluded"])

    none = _error(client.get("/api/results/recommend", params={"model": GPT2, "batch": 4, "seq": 16}), 404)
    assert "out of memory" in none["detail"]
    shape = _error(client.get("/api/results/recommend", params={"model": BERT, "batch": 2, "seq": 16}), 404)
    assert "forward batch=1 seq=16" in shape["detail"]
    _error(client.get("/api/results/recommend", params={"model": "org/none", "batch": 1, "seq": 16}), 404)
    _error(client.get("/api/results/recommend", params={"model": BERT, "batch": 0, "seq": 16}), 422)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export(client, tmp_path, fmt):
    response = client.get("/api/results/export", params={"format": fmt, "model": BERT, "target": "cpu/openvino"})
    assert response.status_code == 200, response.text
    assert response.headers["x-row-count"] == "6"
    assert f"measurements.{fmt}" in response.headers["content-disposition"]
    out = tmp_path / f"export.{fmt}"
    out.write_bytes(response.content)
    reader = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json"}[fmt]
    con = duckdb.connect()
    try:
        rows = con.execute(f"SELECT target, run_id, p50_ms, noisy FROM {reader}(?)", [str(out)]).fetchall()
    finally:
        con.close()
    assert [r[2] for r in rows] == [10.0, 3.0, 10.0, 3.0, 10.0, 2.0]
    assert rows[5] == ("cpu/openvino", "P3-sk-bert-ov", 2.0, True)
    if fmt == "json":
        assert len(json.loads(response.content)) == 6
    if fmt == "csv":
        assert io.StringIO(response.text).readline().startswith("model_ref,target")


def test_export_everything_and_bad_formats(client):
    response = client.get("/api/results/export")
    assert response.headers["x-row-count"] == "31" and response.headers["content-type"].startswith("text/csv")
    assert len(response.text.strip().splitlines()) == 1 + 31
    assert client.get("/api/results/export", params={"limit": 4, "offset": 30}).headers["x-row-count"] == "1"
    page = client.get("/api/results/export", params={"limit": 4, "offset": 8}).headers
    assert (page["x-row-count"], page["x-next-offset"]) == ("4", "12")  # a full page says where the next starts
    assert "x-next-offset" not in response.headers
    assert client.get("/api/results/export", params={"limit": 10**7}).status_code == 422  # capped
    bad = _error(client.get("/api/results/export", params={"format": "xlsx"}), 422)["detail"]
    assert all(f in bad for f in ("csv", "parquet", "json"))


def test_every_results_route_is_in_the_openapi_schema_with_a_model(client):
    paths = client.get("/openapi.json").json()["paths"]
    for name, model in (
        ("summary", "SummaryPage"),
        ("compare", "CompareResponse"),
        ("history", "HistoryResponse"),
        ("regressions", "RegressionsResponse"),
        ("recommend", "Recommendation"),
    ):
        schema = paths[f"/api/results/{name}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(model)
    assert "text/csv" in paths["/api/results/export"]["get"]["responses"]["200"]["content"]
