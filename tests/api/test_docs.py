"""/docs and /redoc work with no internet: every asset they load is served by the app itself."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from accel.api.app import create_app
from accel.api.docs import install_offline_docs
from accel.settings import Settings

ASSET_REF = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in ASSET_REF.findall(html)]


def _offline_app() -> FastAPI:
    return create_app(Settings(prefect_api_url="http://127.0.0.1:9/api"))  # never reached: docs need no Prefect


@pytest.mark.parametrize(
    "app_factory",
    [_offline_app, lambda: _with_docs(FastAPI()), lambda: _with_docs(FastAPI(docs_url=None, redoc_url=None))],
    ids=["accel-app", "fastapi-defaults", "docs-disabled"],
)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(app_factory, page):
    client = TestClient(app_factory())
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    refs = _references(response.text)
    assert refs, response.text
    assert "/openapi.json" in refs
    for ref in refs:
        assert ref.startswith("/"), f"{page} loads {ref} from outside the app"
        assert client.get(ref).status_code == 200, ref
    assert "http://" not in response.text and "https://" not in response.text  # no CDN, no Google fonts


def _with_docs(app: FastAPI) -> FastAPI:
    install_offline_docs(app)
    return app


def test_swagger_ui_assets_are_the_real_bundles():
    client = TestClient(_offline_app())
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 100_000
    css = client.get("/docs-static/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    redoc = client.get("/docs-static/redoc.standalone.js")
    assert redoc.status_code == 200 and len(redoc.content) > 100_000
    assert '"validatorUrl": null' in client.get("/docs").text  # no badge fetched from an online validator


def test_installing_twice_keeps_one_route_per_page():
    app = FastAPI()
    install_offline_docs(app)
    install_offline_docs(app)
    paths = [getattr(route, "path", None) for route in app.router.routes]
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/docs-static"):
        assert paths.count(path) == 1, paths
    assert TestClient(app).get("/docs/oauth2-redirect").status_code == 200
