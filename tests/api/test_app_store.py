"""The app holds the results file open for its life (it is the one writer under `accel up`) and frees it at shutdown."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.settings import Settings
from accel.storage import ResultsStore
from tests.storage.api_server import bearer, issue_key
from tests.storage.test_held_store import probe


def test_the_app_holds_the_results_file_until_shutdown(tmp_path):
    path = tmp_path / "results.duckdb"
    app = create_app(Settings(home=tmp_path / "home", results=str(path), prefect_api_url="http://127.0.0.1:9/api"))
    with TestClient(app, headers=bearer(issue_key(tmp_path / "home", "worker"))) as client:
        assert repr(app.state.store).endswith("hold=True)")
        ingested = client.post("/api/results/ingest", json={"runs": [{"run_id": "r1", "kind": "chain"}]})
        assert ingested.status_code == 200, ingested.text
        assert probe(path).strip() == "locked"  # another process waits for the API (or sends it rows)
        assert ResultsStore(path).get_run("r1") is not None  # this process shares the API's connection
    assert probe(path).strip() == "1"


def test_beside_a_running_api_the_cli_writes_through_it_and_refuses_direct_reads(tmp_path, monkeypatch):
    """`accel run` beside `accel up`: the API holds the file, so the store opened here is the API's."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import pytest

    from accel.settings import get_settings
    from accel.storage import HttpResultsStore, RunRecord
    from accel.tasks.errors import RequestError
    from accel.tasks.results_store import open_results_file, open_results_store

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path / "home"
    env = {**os.environ, "ACCEL_HOME": str(home), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    command = [sys.executable, "-m", "uvicorn", "accel.api.app:create_app", "--factory", "--port", str(port)]
    api = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        monkeypatch.setenv("ACCEL_HOME", str(home))
        monkeypatch.setenv("ACCEL_API_PORT", str(port))
        monkeypatch.setenv("ACCEL_API_KEY", issue_key(home, "worker", "read"))
        get_settings.cache_clear()
        store = open_results_store()
        assert isinstance(store, HttpResultsStore) and store.url == f"http://127.0.0.1:{port}"
        store.record_run(RunRecord(run_id="beside-up", kind="chain"))
        assert store.get_run("beside-up") is not None
        with pytest.raises(RequestError, match="holds open"):
            open_results_file(what="accel compare")
    finally:
        api.terminate()
        api.wait(timeout=30)
    assert ResultsStore(home / "results.duckdb").get_run("beside-up") is not None
