"""The accel API: `create_app()` builds it (uvicorn: `accel.api.app:create_app --factory`).

The lifespan opens what every request shares: the DuckDB results file (this process is its one writer
under `accel up`), a Prefect REST client and the WebSocket relay. Nothing here imports torch,
transformers or a runtime: the API asks Prefect to run work and reads the store, so it starts in
well under a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from accel import __version__
from accel.api.auth import document_security, guard, is_loopback_host
from accel.api.cache import AggregateCache
from accel.api.components import COMPONENTS, Component
from accel.api.docs import install_offline_docs
from accel.api.errors import ErrorBody, install_error_handlers
from accel.api.gateway import install_gateway, open_gateway
from accel.api.limits import install_limits
from accel.api.prefect import PrefectClient
from accel.api.relay import RunRelay
from accel.api.routes import benchmark, generator, hardware, health, keys, records, results, test, workflows
from accel.api.runs import chain_results
from accel.settings import Settings, get_settings
from accel.storage import ResultsStore
from accel.storage.keys import KeyStore

ROUTERS = (
    test.router,
    generator.router,
    benchmark.router,
    workflows.router,
    results.router,
    records.router,
    hardware.router,
    health.router,
    keys.router,
)


def create_app(
    settings: Settings | None = None, component: Component | None = None, upstreams: Mapping[str, str] | None = None
) -> FastAPI:
    """The app, on `settings` (default: the process's ACCEL_* and PREFECT_API_URL environment).

    `component`: that component's API alone (`accel serve --component`). Otherwise the unified server, every
    component in-process except those in `upstreams` (default: ACCEL_UPSTREAM_*), forwarded (api/gateway.py).
    """
    settings = settings or get_settings()
    routers = COMPONENTS[component] if component else ROUTERS
    upstreams = {} if component else dict(settings.upstreams if upstreams is None else upstreams)
    if settings.results_url:
        raise RuntimeError(
            f"ACCEL_RESULTS={settings.results_url} points the API at an API: the API writes the results file "
            "itself; give it a file path (or leave ACCEL_RESULTS unset for $ACCEL_HOME/results.duckdb)"
        )
    if not settings.auth and not is_loopback_host(settings.api_host):
        raise RuntimeError(
            f"ACCEL_AUTH=off while ACCEL_API_HOST={settings.api_host}: the API serves without keys only on "
            "loopback (127.0.0.1, ::1); turn auth on, or listen on loopback"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        # Held open for the app's life: the API is the file's one writer, and a held connection halves the
        # cost of each query; other processes reach the file through the API until shutdown closes it.
        app.state.store = ResultsStore(settings.results_path, settings.db_timeout_s, hold=True)
        app.state.aggregates = AggregateCache()
        app.state.prefect = PrefectClient(settings.prefect_api_url, settings.prefect_ui_url)
        app.state.relay = RunRelay(
            app.state.prefect,
            results=lambda run_id: [r.model_dump(mode="json") for r in chain_results(app.state.store, run_id)],
        )
        app.state.gateway = open_gateway(settings, upstreams)  # None when nothing is forwarded
        try:
            yield
        finally:
            try:
                if app.state.gateway is not None:
                    await app.state.gateway.aclose()
                await app.state.relay.aclose()
                await app.state.prefect.aclose()
            finally:
                app.state.store.close()  # releases the file, also when a close above failed

    app = FastAPI(
        title="accel" if component is None else f"accel {component}",
        version=__version__,
        summary="Generate, test and benchmark Hugging Face models on every hardware target.",
        lifespan=lifespan,
        # Every error is api/errors.py's {error, detail}: documented so, instead of FastAPI's own 422 body.
        responses={
            "4XX": {"model": ErrorBody, "description": "The request was refused: what was wrong and what is accepted"},
            503: {"model": ErrorBody, "description": "Prefect or the results store is unavailable: retry later"},
        },
        docs_url=None,  # served offline below: FastAPI's own pages load Swagger UI and ReDoc from a CDN
        redoc_url=None,
        # Every route, HTTP and WebSocket, including routes added later: api/auth.py's one check.
        dependencies=[Depends(guard)],
    )
    # Before the lifespan: the guard needs them for any request, and a TestClient may skip the lifespan.
    app.state.settings = settings
    app.state.keys = KeyStore(settings.ops_path)
    install_limits(app, settings)
    document_security(app)
    install_gateway(app, settings, component, upstreams)
    install_offline_docs(app)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app
