"""A raw HTTP client on the test Prefect server that, like Prefect's own client, retries its 503s.

Prefect answers 503 when its SQLite database stays locked past its timeout, which a busy 2-core
machine sometimes sees; Prefect's client retries those (PREFECT_CLIENT_MAX_RETRIES), so tests that
write to Prefect directly, as a worker would, retry them too instead of failing on the server's load.
"""

from __future__ import annotations

import time

import httpx

_ATTEMPTS = 6


class _RetryOn503(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(_ATTEMPTS):
            response = super().handle_request(request)
            if response.status_code != 503 or attempt == _ATTEMPTS - 1:
                return response
            response.close()
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


def prefect_http(prefect_api: str) -> httpx.Client:
    return httpx.Client(base_url=prefect_api, timeout=10, transport=_RetryOn503())
