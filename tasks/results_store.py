"""Where "the results store" is opened from settings: the one place that decides file or HTTP.

`ACCEL_RESULTS=http(s)://host:port` sends every record to that accel API (failed sends wait in
`$ACCEL_HOME/outbox/results.jsonl`); anything else is the DuckDB file (`ACCEL_RESULTS`, or
`$ACCEL_HOME/results.duckdb`). A URL is never replaced by a local file, whatever happens to the API.
When the file is held by an accel API running here (`accel up`: the API is its one writer and keeps it
open), records go through that API instead, so `accel run` beside `accel up` works.
"""

from __future__ import annotations

from pathlib import Path

from accel.settings import Settings, get_settings
from accel.storage import HttpResultsStore, ResultsStore
from accel.tasks.errors import RequestError, ServiceUnavailableError

# Either store: the same record models, the same write methods, and the reads flows need.
AnyResultsStore = ResultsStore | HttpResultsStore


def outbox_path(settings: Settings | None = None) -> Path:
    """Where records wait when the accel API does not take them."""
    settings = settings or get_settings()
    return settings.home / "outbox" / "results.jsonl"


def api_holding_file(settings: Settings) -> str | None:
    """The URL of the accel API on ACCEL_API_HOST:ACCEL_API_PORT when it is up and holds this very file."""
    import httpx

    url = f"http://{settings.api_host}:{settings.api_port}"
    try:
        key = settings.client_api_key()  # the file's path is told to callers with a key only
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        health = httpx.get(f"{url}/api/health", headers=headers, timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    held = health.get("results_file") if isinstance(health, dict) else None
    return url if held and Path(held) == settings.results_path else None


def open_results_store(settings: Settings | None = None) -> AnyResultsStore:
    """The results store the settings name: the accel API's when ACCEL_RESULTS is a URL (or when the API
    running here holds the file), else the DuckDB file."""
    settings = settings or get_settings()
    url = settings.results_url or (api_holding_file(settings) if _file_locked(settings.results_path) else None)
    if url is not None:
        return HttpResultsStore(
            url,
            outbox=outbox_path(settings),
            api_key=settings.client_api_key(),
            timeout_s=settings.db_timeout_s + 15.0,  # past the API's own wait for the file's lock
            unavailable=ServiceUnavailableError,
        )
    return ResultsStore(settings.results_path, settings.db_timeout_s)


def _file_locked(path: Path) -> bool:
    """Whether another process holds the DuckDB file (cheap: one failed open, no wait)."""
    if not path.is_file():
        return False
    import duckdb

    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException:
        return True
    except duckdb.Error:
        return False
    return False


def open_results_file(settings: Settings | None = None, what: str = "this command") -> ResultsStore:
    """The DuckDB file, for reads only the file can serve (SQL aggregates); a clear error under a URL."""
    settings = settings or get_settings()
    if settings.results_url is not None:
        raise RequestError(
            f"{what} reads the DuckDB results file, but ACCEL_RESULTS={settings.results_url} sends results to "
            "the accel API: run it on the API's host, or set ACCEL_RESULTS to the file's path"
        )
    if _file_locked(settings.results_path) and (url := api_holding_file(settings)) is not None:
        raise RequestError(
            f"{what} reads the DuckDB results file, which the accel API at {url} holds open (`accel up`): "
            f"read it through the API (e.g. {url}/api/results/regressions?run=...&baseline=...), or stop it first"
        )
    return ResultsStore(settings.results_path, settings.db_timeout_s)
