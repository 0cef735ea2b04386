"""What one caller can make the API do: the limits in one place (OWASP API4, unrestricted consumption).

- POSTs per key: a token bucket per key, in memory (`ACCEL_RATE_LIMIT_PER_MINUTE`, default 120: a burst
  of that many, refilled at that rate). A worker's ingest has a bucket of its own, INGEST_RATE_FACTOR times
  larger, because one chain sends many small batches. An empty bucket is a 429 with `Retry-After`.
- Request bodies: MAX_BODY_BYTES, or MAX_INGEST_BODY_BYTES for `POST /api/results/ingest`; larger is a
  413, read no further than the cap.
- A batch of records: MAX_INGEST_RECORDS (413). Models x targets of one request: `schemas.operations.MAX_RUN_CELLS`
  (a 422 naming it).
- Rows per results query: `storage.queries.MAX_LIMIT` per page, with `next_offset` to the next page.
- CORS: closed (no CORS headers at all) unless `ACCEL_CORS_ORIGINS` names origins.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accel.settings import Settings
from accel.tasks.errors import RateLimitedError

MAX_BODY_BYTES = 1 << 20  # 1 MiB: every body but a worker's batch of rows is a few hundred bytes
MAX_INGEST_BODY_BYTES = 64 << 20  # a batch carries each measurement's raw samples
MAX_INGEST_RECORDS = 10_000
INGEST_RATE_FACTOR = 10
INGEST_PATH = "/api/results/ingest"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `per_minute` tokens at most, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[tuple[str, bool], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, ingest: bool = False) -> None:
        """Spend one token of the key's bucket; RateLimitedError (429, Retry-After) when it is empty."""
        if self.per_minute <= 0:
            return
        capacity = float(self.per_minute * (INGEST_RATE_FACTOR if ingest else 1))
        per_s = capacity / 60.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get((key_id, ingest))
            if bucket is None:
                bucket = self._buckets[key_id, ingest] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * per_s)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / per_s
        what = "ingest batches" if ingest else "POSTs"
        raise RateLimitedError(
            f"key {key_id} sent more than {capacity:g} {what} a minute: retry in {math.ceil(wait)} s", wait
        )


def body_cap(path: str) -> int:
    return MAX_INGEST_BODY_BYTES if path == INGEST_PATH else MAX_BODY_BYTES


class BodySizeLimit:
    """413 for a body past its cap, read no further: by its Content-Length, or as its chunks arrive."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        cap = body_cap(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return await _too_large(cap, scope, receive, send)
        # Read the body here (the app reads all of it anyway) so a chunked body is stopped at the cap too.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > cap:
                return await _too_large(cap, scope, receive, send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _too_large(cap: int, scope: Scope, receive: Receive, send: Send) -> None:
    from accel.api.errors import error_response

    detail = f"the request body is larger than this endpoint accepts: at most {cap} bytes"
    await error_response(413, "payload_too_large", detail, {"Connection": "close"})(scope, receive, send)


def install_limits(app: FastAPI, settings: Settings) -> None:
    """The body cap, the rate limiter (`app.state.rate_limiter`, used by auth.guard) and CORS if configured."""
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.add_middleware(BodySizeLimit)
    origins = settings.cors_origin_list
    if origins:  # added last: outermost, so even a refused request carries its CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            max_age=600,
        )
