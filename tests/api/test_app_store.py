"""The app holds the results file open for its life (it is the one writer under `accel up`) and frees it at shutdown."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.settings import Settings
from accel.storage import ResultsStore
from tests.storage.test_held_store import probe


def test_the_app_holds_the_results_file_until_shutdown(tmp_path):
    path = tmp_path / "results.duckdb"
    app = create_app(Settings(home=tmp_path / "home", results=str(path), prefect_api_url="http://127.0.0.1:9/api"))
    with TestClient(app) as client:
        assert repr(app.state.store).endswith("hold=True)")
        ingested = client.post("/api/results/ingest", json={"runs": [{"run_id": "r1", "kind": "chain"}]})
        assert ingested.status_code == 200, ingested.text
        assert probe(path).strip() == "locked"  # another process waits for the API (or sends it rows)
        assert ResultsStore(path).get_run("r1") is not None  # this process shares the API's connection
    assert probe(path).strip() == "1"
