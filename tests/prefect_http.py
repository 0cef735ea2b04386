"""Raw HTTP clients on a test Prefect server that, like Prefect's own client, retry its 503s.

Prefect answers 503 when its SQLite database stays locked past its timeout, which a busy 2-core
machine sometimes sees (most often on a server that has just started); Prefect's client retries
those (PREFECT_CLIENT_MAX_RETRIES), so tests that write to Prefect directly, as a worker would,
retry them too instead of failing on the server's load.
"""

from __future__ import annotations

import asyncio
import time

import httpx

_ATTEMPTS = 6


def _backoff(attempt: int) -> float:
    return 0.5 * 2**attempt


class _RetryOn503(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(_ATTEMPTS):
            response = super().handle_request(request)
            if response.status_code != 503 or attempt == _ATTEMPTS - 1:
                return response
            response.close()
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")


class _AsyncRetryOn503(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(_ATTEMPTS):
            response = await super().handle_async_request(request)
            if response.status_code != 503 or attempt == _ATTEMPTS - 1:
                return response
            await response.aclose()
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")


def prefect_http(prefect_api: str) -> httpx.Client:
    return httpx.Client(base_url=prefect_api, timeout=10, transport=_RetryOn503())


def async_prefect_http(prefect_api: str, timeout: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=prefect_api, timeout=timeout, transport=_AsyncRetryOn503())
