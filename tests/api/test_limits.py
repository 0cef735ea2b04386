"""What one caller can make the API do: POSTs per key (429 with Retry-After), body and batch caps (413), rows
per page, CORS closed unless configured. In process, on a real DuckDB file; Prefect is not needed (and away)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.api.limits import MAX_BODY_BYTES, MAX_INGEST_RECORDS, RateLimiter
from accel.settings import Settings
from accel.tasks.errors import RateLimitedError
from tests.storage.api_server import DEAD_PREFECT, bearer, issue_key


def _client(home, **settings) -> TestClient:
    return TestClient(create_app(Settings(home=home, prefect_api_url=DEAD_PREFECT, **settings)))


def test_posts_past_the_keys_rate_get_429_with_retry_after_and_other_keys_do_not(tmp_path):
    home = tmp_path / "home"
    busy, calm = issue_key(home, "run"), issue_key(home, "run")
    with _client(home, rate_limit_per_minute=3) as client:
        answers = [client.post("/api/workflows/nightly", headers=bearer(busy)).status_code for _ in range(3)]
        assert 429 not in answers  # the bucket's three (503: the harness has no Prefect here)
        limited = client.post("/api/workflows/nightly", headers=bearer(busy))
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"] == "rate_limited" and "3 POSTs a minute" in limited.json()["detail"]
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get("/api/workflows", headers=bearer(busy)).status_code != 429  # reads are not POSTs
        assert client.post("/api/workflows/nightly", headers=bearer(calm)).status_code != 429  # a bucket per key


def test_the_token_bucket_refills_at_its_rate():
    limiter = RateLimiter(per_minute=60)  # one a second
    for _ in range(60):
        limiter.take("k")
    with pytest.raises(RateLimitedError) as caught:
        limiter.take("k")
    assert 0 < caught.value.retry_after_s <= 1.0 and caught.value.headers == {"Retry-After": "1"}
    limiter.take("k", ingest=True)  # ingest has a bucket of its own
    RateLimiter(per_minute=0).take("k")  # 0: no limit


def test_a_body_past_its_cap_is_413_read_no_further(tmp_path):
    home = tmp_path / "home"
    key = issue_key(home)
    with _client(home) as client:
        big = b'{"models": ["' + b"x" * MAX_BODY_BYTES + b'"], "targets": ["cpu/torch"]}'
        answer = client.post("/api/workflows/pipeline", content=big, headers=bearer(key))
        assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"
        assert str(MAX_BODY_BYTES) in answer.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b" " * 65536

        chunked = client.post("/api/workflows/pipeline", content=chunks(), headers=bearer(key))
        assert chunked.status_code == 413
        assert client.post("/api/workflows/pipeline", content=big).status_code == 413  # before auth: never read


def test_a_batch_past_its_record_cap_is_413_and_nothing_is_written(tmp_path):
    home = tmp_path / "home"
    key = issue_key(home, "worker", "read")
    with _client(home) as client:
        batch = {"runs": [{"run_id": f"r{i}", "kind": "chain"} for i in range(MAX_INGEST_RECORDS + 1)]}
        answer = client.post("/api/results/ingest", json=batch, headers=bearer(key))
        assert answer.status_code == 413 and f"at most {MAX_INGEST_RECORDS}" in answer.json()["detail"]
        listed = client.get("/api/results/runs", headers=bearer(key), params={"limit": 5})
        assert listed.status_code == 200 and listed.json() == []


def test_cors_is_closed_unless_origins_are_configured(tmp_path):
    home = tmp_path / "home"
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    with _client(home) as client:
        answer = client.options("/api/results/summary", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    with _client(home, cors_origins="https://dash.example, https://other.example") as client:
        answer = client.options("/api/results/summary", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://dash.example"
        assert "Authorization" in answer.headers["access-control-allow-headers"]
        elsewhere = client.options("/api/results/summary", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in elsewhere.headers


def test_pages_say_where_the_next_one_starts_and_are_capped(tmp_path):
    home = tmp_path / "home"
    key = issue_key(home, "read")
    with _client(home) as client:
        too_many = client.get("/api/results/summary", params={"limit": 1001}, headers=bearer(key))
        assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "next_offset" in schema["SummaryPage"]["properties"] and "next_offset" in schema["RunList"]["properties"]
