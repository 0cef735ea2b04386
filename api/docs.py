"""`/docs` (Swagger UI) and `/redoc` that work with no internet: their JS and CSS come from the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine that reaches no CDN (a lab
network, CI) they are blank. The assets ship in the `fastapi-offline` wheel (swagger-ui-bundle.js,
swagger-ui.css, redoc.standalone.js, favicon.png); only its static folder is used here, mounted with
StaticFiles, and the pages are FastAPI's own `get_swagger_ui_html` / `get_redoc_html` pointed at it.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
STATIC_URL = "/docs-static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The folder of the Swagger UI and ReDoc bundles inside the installed `fastapi-offline` package."""
    spec = find_spec("fastapi_offline")  # its folder only: importing it is not needed
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline API docs need the fastapi-offline package (pip install fastapi-offline)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline at {folder} lacks {', '.join(missing)}")
    return folder


def _drop_routes(app: FastAPI, paths: set[str]) -> None:
    """Remove the CDN-backed pages FastAPI added when built with its default docs_url/redoc_url."""
    keep: list[BaseRoute] = [r for r in app.router.routes if getattr(r, "path", None) not in paths]
    app.router.routes[:] = keep


def install_offline_docs(app: FastAPI, docs_url: str = DOCS_URL, redoc_url: str = REDOC_URL) -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at `redoc_url` from local assets under /docs-static.

    Works whether the app was built with `docs_url=None, redoc_url=None` or with FastAPI's defaults
    (those CDN pages are replaced). Call it after `FastAPI(...)`, before the app starts.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"
    _drop_routes(
        app,
        {p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url, docs_url, redoc_url) if p}
        | {oauth2_url, STATIC_URL},
    )
    app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url = docs_url, redoc_url, oauth2_url
    app.mount(STATIC_URL, StaticFiles(directory=assets_dir()), name="docs-static")
    # Swagger UI asks an online validator for a badge unless told not to.
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{oauth2_url}",
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=parameters,
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    app.add_route(oauth2_url, oauth2_redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
