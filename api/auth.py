"""Who is calling and what they may do: API keys with scopes, checked once per request by `guard`.

`guard` is installed as a dependency of the whole app (`FastAPI(dependencies=...)`), so every HTTP and
WebSocket route gets it, including routes added later. It reads the matched route's method and path
template through `scope_of`, the one table of which scope a route needs:

    GET, HEAD and every WebSocket      read
    POST, PUT, PATCH, DELETE           run
    POST /api/results/ingest           worker
    anything under /api/keys           admin

`admin` passes every check, and `run` includes `read`. Keys travel as `Authorization: Bearer <key>` or
`X-API-Key: <key>`. A WebSocket may instead send `{"type": "auth", "token": ...}` as its first message,
the way Prefect's events socket does (it keeps keys out of URLs and access logs). Anything else first,
or a bad key, closes the socket with 1008 before any run data.

Behind the accel gateway (`ACCEL_GATEWAY_SECRET` set), a request whose `X-Accel-Gateway-Secret` equals
the secret is taken as the principal in `X-Accel-Principal`, which the gateway authenticated. Without
the right secret those headers are ignored. `ACCEL_AUTH=off` lets every loopback client through as
admin, and refuses clients that are not on loopback.

Only EXEMPT_PATHS are served without a key: liveness and the API's own documentation.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Literal

from fastapi import WebSocketException
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocket, WebSocketState

from accel.tasks.errors import AuthenticationError, PermissionDeniedError

Scope = Literal["read", "run", "worker", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "run", "worker", "admin")
# What holding a scope allows: admin everything; a key that starts runs can also follow them.
GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "run": frozenset({"run", "read"}),
    "read": frozenset({"read"}),
    "worker": frozenset({"worker"}),
}
# Served without a key. Liveness, because `accel up`, load balancers and `api_holding_file` probe it
# before they hold any key: without a key it says only up or degraded, never paths or addresses. The
# docs pages, their assets and the OpenAPI document describe the API and hold no data.
EXEMPT_PATHS = frozenset({"/api/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/docs-static"})
INGEST_ROUTE = ("POST", "/api/results/ingest")
KEYS_PATH = "/api/keys"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "WEBSOCKET"})
GATEWAY_SECRET_HEADER = "x-accel-gateway-secret"
GATEWAY_PRINCIPAL_HEADER = "x-accel-principal"
SOCKET_AUTH_TIMEOUT_S = 10.0


class Principal(BaseModel):
    """The caller a request was authenticated as: a key's id, name and scopes (never its secret)."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    scopes: frozenset[Scope]


ANONYMOUS = Principal(key_id="anonymous", name="ACCEL_AUTH=off", scopes=frozenset({"admin"}))


def scope_of(method: str, path_template: str) -> Scope:
    """The scope a route needs: THE one table (see the module's docstring)."""
    if path_template == KEYS_PATH or path_template.startswith(KEYS_PATH + "/"):
        return "admin"
    method = method.upper()
    if (method, path_template) == INGEST_ROUTE:
        return "worker"
    return "read" if method in READ_METHODS else "run"


def is_exempt(path_template: str) -> bool:
    return path_template in EXEMPT_PATHS


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer ...` or `X-API-Key`, or None."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _gateway_principal(headers: Mapping[str, str], app_state: Any) -> Principal | None:
    """The principal the gateway forwarded, when the request carries the gateway's secret."""
    secret = app_state.settings.gateway_secret
    sent = headers.get(GATEWAY_SECRET_HEADER)
    if secret is None or sent is None:
        return None
    if not hmac.compare_digest(sent.encode(), secret.get_secret_value().encode()):
        return None  # not the gateway: its headers mean nothing
    try:
        return Principal.model_validate_json(headers.get(GATEWAY_PRINCIPAL_HEADER) or "")
    except ValidationError:
        raise AuthenticationError("the gateway forwarded no valid X-Accel-Principal") from None


def principal_of_key(token: str, app_state: Any) -> Principal:
    """The principal of a presented key; AuthenticationError saying why it is refused."""
    found = app_state.keys.verify(token)
    if found.verdict == "ok":
        record = found.record
        return Principal(key_id=record.id, name=record.name, scopes=frozenset(record.scopes))
    why = {
        "malformed": "is not an accel API key (accel_<id>_<secret>)",
        "unknown": "is not a key of this API",
        "revoked": "was revoked",
        "expired": "has expired",
    }[found.verdict]
    named = f" {found.record.id}" if found.record is not None else ""
    raise AuthenticationError(f"the API key{named} {why}: ask an admin for one (`accel keys create`)")


def is_loopback_host(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def authenticate(headers: Mapping[str, str], app_state: Any, client_host: str | None = None) -> Principal:
    """The caller: the gateway's principal, the key's, or ANONYMOUS when auth is off; 401 otherwise."""
    forwarded = _gateway_principal(headers, app_state)
    if forwarded is not None:
        return forwarded
    token = presented_key(headers)
    if token is not None:
        return principal_of_key(token, app_state)
    if not app_state.settings.auth:
        if client_host is not None and not is_loopback_host(client_host):
            raise AuthenticationError("ACCEL_AUTH=off serves loopback clients only: send an API key")
        return ANONYMOUS
    raise AuthenticationError("no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")


def authorize(principal: Principal, scope: Scope) -> None:
    """PermissionDeniedError unless the principal's scopes grant `scope` (admin grants all)."""
    if any(scope in GRANTS[s] for s in principal.scopes):
        return
    raise PermissionDeniedError(
        f"key {principal.key_id} ({principal.name}) has scope {', '.join(sorted(principal.scopes))}; this needs {scope}"
    )


def route_template(connection: HTTPConnection) -> str:
    """The matched route's path template (`/api/test/status/{run_id}`), else the raw path."""
    route = connection.scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or connection.url.path


async def guard(connection: HTTPConnection) -> None:
    """The one check every route gets: authenticate, authorize, and (for writes) the key's rate limit."""
    template = route_template(connection)
    if is_exempt(template):
        return
    if connection.scope["type"] == "websocket":
        assert isinstance(connection, WebSocket)
        connection.state.principal = await _authenticate_socket(connection, scope_of("WEBSOCKET", template))
        return
    method = connection.scope["method"]
    client = connection.client.host if connection.client else None
    principal = authenticate(connection.headers, connection.app.state, client)
    authorize(principal, scope_of(method, template))
    connection.state.principal = principal
    if method not in READ_METHODS:
        connection.app.state.rate_limiter.take(principal.key_id, ingest=(method, template) == INGEST_ROUTE)


async def _first_message_key(websocket: WebSocket) -> str:
    try:
        message = await asyncio.wait_for(websocket.receive(), SOCKET_AUTH_TIMEOUT_S)
    except TimeoutError:
        raise AuthenticationError(f"no auth message within {SOCKET_AUTH_TIMEOUT_S:g} s") from None
    text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("type") != "auth" or not isinstance(body.get("token"), str):
        raise AuthenticationError('the first message must be {"type": "auth", "token": "<API key>"}')
    return body["token"]


async def _authenticate_socket(websocket: WebSocket, scope: Scope) -> Principal:
    """A key in the handshake's headers, else the first message; 1008 before any run data otherwise."""
    state = websocket.app.state
    client = websocket.client.host if websocket.client else None
    by_message = False
    try:
        offered = presented_key(websocket.headers) is not None or _gateway_principal(websocket.headers, state)
        if offered or not state.settings.auth:
            principal = authenticate(websocket.headers, state, client)
        else:
            await websocket.accept()
            by_message = True
            principal = principal_of_key(await _first_message_key(websocket), state)
        authorize(principal, scope)
    except (AuthenticationError, PermissionDeniedError) as err:
        if websocket.client_state == WebSocketState.CONNECTING:
            await websocket.accept()  # accepted, so the client reads the close code and reason
        raise WebSocketException(WS_1008_POLICY_VIOLATION, reason=str(err)[:120]) from None
    if by_message:
        await websocket.send_json({"type": "auth_success"})
    return principal


def current_principal(connection: HTTPConnection) -> Principal:
    """The principal `guard` authenticated for this request."""
    principal = getattr(connection.state, "principal", None)
    if principal is None:  # a route guard did not run for: refuse rather than serve it anonymously
        raise AuthenticationError("this route was not authenticated")
    return principal


def optional_principal(connection: HTTPConnection) -> Principal | None:
    """The caller of an exempt route, when they sent a valid key (None otherwise: never an error)."""
    client = connection.client.host if connection.client else None
    try:
        return authenticate(connection.headers, connection.app.state, client)
    except AuthenticationError:
        return None


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An accel API key: `accel keys create`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key, another header"},
}


def document_security(app: Any) -> None:
    """Say in the OpenAPI document what `guard` enforces: a key on every operation but the exempt ones (Swagger
    UI's Authorize button then sends it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation["security"] = [] if is_exempt(path) else [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
