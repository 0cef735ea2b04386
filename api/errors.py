"""Every error the API answers with: JSON `{"error": kind, "detail": message}`, never a traceback.

Request errors come from the one taxonomy in `tasks/errors.py` (the CLI's exit code 2 list); the store
being busy and Prefect being away are 503s with `Retry-After`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from accel.storage import StoreBusyError
from accel.tasks.errors import REQUEST_ERRORS, ServiceUnavailableError, error_kind, http_status

log = logging.getLogger("accel.api")
RETRY_AFTER_S = 5


class ErrorBody(BaseModel):
    error: str
    detail: str


def error_response(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=kind, detail=detail).model_dump(), status_code=status, headers=headers)


def _validation_detail(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_detail(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return error_response(err.status_code, kind, str(err.detail), getattr(err, "headers", None))

    for cls in REQUEST_ERRORS:

        @app.exception_handler(cls)
        async def _request_error(_: Request, err: Exception) -> JSONResponse:
            return error_response(http_status(err) or 422, error_kind(err), str(err), getattr(err, "headers", None))

    @app.exception_handler(ServiceUnavailableError)
    async def _unavailable(_: Request, err: ServiceUnavailableError) -> JSONResponse:
        return error_response(503, "service_unavailable", str(err), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(StoreBusyError)
    async def _busy(_: Request, err: StoreBusyError) -> JSONResponse:
        return error_response(503, "results_store_busy", str(err), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception) -> JSONResponse:  # a bug: logged here, one line out there
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"{type(err).__name__}: the API failed; see its log")
