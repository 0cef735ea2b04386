"""Errors that mean "the caller asked for something that cannot be done", not a bug: one taxonomy.

Every request error is a `RequestError` (or the hardware layer's `TargetError`) and carries the HTTP
status it maps to; the CLI turns any of them into exit code 2 with one line, the API into that status
with a JSON body `{"error": kind, "detail": message}`. `ServiceUnavailableError` and the store's
`StoreBusyError` are 503s (try again later), exit code 1 in the CLI. Imports only the standard library
and the import-light hardware targets, so the API can use it without the ML stack.
"""

from __future__ import annotations

import math
from typing import ClassVar

from accel.hardware.targets import TargetError


class RequestError(ValueError):
    """The request names something that does not exist or cannot be done. HTTP 422 unless said otherwise."""

    status_code = 422


class ModelRefError(RequestError):
    """A model ref that cannot be resolved to a local transformers model directory."""


class UnsupportedModelError(RequestError):
    """The model's architecture is outside the six families accel drives."""


class UnsupportedTargetError(RequestError):
    """The target cannot be generated for: the family's template lacks it, or this machine cannot run it."""


class SkillDirError(RequestError):
    """A folder that is not a generated skill (no skill.py and manifest.json), or a bad test request."""


class LevelError(RequestError):
    """A test level that does not exist."""


class ShapeError(RequestError):
    """A benchmark shape (batch size, sequence length, token count) that cannot be measured."""


class RunNotFoundError(RequestError):
    """No run (flow run, generation task) with that id."""

    status_code = 404


class RunConflictError(RequestError):
    """The run is in a state that does not allow this (cancelling a run that already ended)."""

    status_code = 409


class AuthenticationError(RequestError):
    """No API key, or one that is malformed, unknown, expired or revoked."""

    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="accel"'}


class PermissionDeniedError(RequestError):
    """A valid key whose scopes do not allow this (or a run another key started)."""

    status_code = 403


class PayloadTooLargeError(RequestError):
    """A request body, or a batch in it, past the API's cap."""

    status_code = 413


class RateLimitedError(RequestError):
    """Too many requests from one key: try again after `retry_after_s` seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class PrefectRequestError(RequestError):
    """Prefect refused the request as invalid (parameters a deployment does not accept...)."""


class GenerationError(RuntimeError):
    """Generation ran and failed: no exporter produced an artifact that matches the reference."""


class ServiceUnavailableError(RuntimeError):
    """A service the request needs (Prefect, the accel API) does not answer: try again when it is back."""

    status_code = 503


class UpstreamUnavailableError(ServiceUnavailableError):
    """The gateway could not reach the component service it forwards to (down, refused, broke off): 502."""

    status_code = 502


class UpstreamTimeoutError(ServiceUnavailableError):
    """The component service the gateway forwards to did not answer within ACCEL_UPSTREAM_TIMEOUT_S: 504."""

    status_code = 504


# The one list: what the CLI exits 2 for and the API answers with a 4xx.
REQUEST_ERRORS: tuple[type[Exception], ...] = (RequestError, TargetError)


def error_kind(err: BaseException) -> str:
    """The name clients see for an error: `model_ref`, `unsupported_target`, `run_not_found`, ..."""
    import re

    name = type(err).__name__.removesuffix("Error") or type(err).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def http_status(err: BaseException) -> int | None:
    """The HTTP status of a request error or an unavailable service; None for anything else (a bug)."""
    if isinstance(err, TargetError):
        return 422
    return getattr(err, "status_code", None) if isinstance(err, RequestError | ServiceUnavailableError) else None
