"""Aggregate answers are served from a cache until the next write through the API's store, and never stale."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.settings import Settings
from tests.storage.api_server import bearer, issue_key


def _batch(n: int) -> dict:
    skill = f"skill-{n}"
    return {
        "runs": [{"run_id": f"run-{n}", "kind": "chain", "status": "completed"}],
        "skills": [
            {
                "skill_id": skill,
                "model_ref": "org/model",
                "target": f"cpu/{['torch', 'onnxruntime', 'openvino'][n]}",
                "hardware": "cpu",
                "runtime": ["torch", "onnxruntime", "openvino"][n],
                "precision": "fp32",
            }
        ],
        "measurements": [
            {
                "run_id": f"run-{n}",
                "skill_id": skill,
                "scenario": "forward",
                "batch": 1,
                "seq": 8,
                "status": "ok",
                "p50_ms": 10.0 + n,
            }
        ],
    }


def test_a_write_makes_every_cached_answer_unreachable(tmp_path):
    app = create_app(Settings(home=tmp_path / "home", prefect_api_url="http://127.0.0.1:9/api"))
    with TestClient(app, headers=bearer(issue_key(tmp_path / "home"))) as client:
        assert client.post("/api/results/ingest", json=_batch(0)).status_code == 200
        first = client.get("/api/results/summary", params={"model": "org/model"}).json()
        again = client.get("/api/results/summary", params={"model": "org/model"}).json()
        cache = app.state.aggregates
        assert first == again and first["total"] == 1 and cache.hits == 1
        other = client.get("/api/results/summary", params={"model": "org/other"}).json()
        assert other["total"] == 0  # another query string is another entry
        assert client.post("/api/results/ingest", json=_batch(1)).status_code == 200
        after = client.get("/api/results/summary", params={"model": "org/model"}).json()
        assert after["total"] == 2 and {r["target"] for r in after["rows"]} == {"cpu/torch", "cpu/onnxruntime"}
        compare = client.get("/api/results/compare", params={"model": "org/model"}).json()
        assert [round(p["speedup"], 4) for p in compare["points"]] == [round(10 / 11, 4)], compare
