"""The accel API. For now a health endpoint, so `accel up` has something to serve and probe.

The component, workflow, results and WebSocket endpoints come with their own issue.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from accel import __version__
from accel.settings import get_settings

app = FastAPI(title="accel", version=__version__, summary="Generate, test and benchmark models on every target.")


@app.get("/api/health")
async def health() -> dict:
    """Whether the API is up, and whether it reaches Prefect and the results store.

    `status` is `ok` only when Prefect answers; `degraded` says the API runs but cannot reach it.
    """
    from prefect.settings import PREFECT_API_URL

    prefect_url = PREFECT_API_URL.value()
    prefect = "not configured"
    if prefect_url:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"{prefect_url.rstrip('/')}/health")
            prefect = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
        except httpx.HTTPError as err:
            prefect = f"unreachable: {type(err).__name__}"
    results = get_settings().results_path
    return {
        "status": "ok" if prefect == "ok" else "degraded",  # up, but cannot start or follow runs
        "version": __version__,
        "prefect_api_url": prefect_url,
        "prefect": prefect,
        "results_store": str(results),
        "results_store_exists": results.is_file(),
    }
