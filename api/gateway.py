"""The unified gateway: a component's paths forwarded to the service that runs it, HTTP and WebSocket.

`accel serve` (what `accel up` runs) is the unified server. Every component (api/components.py) is
in-process unless `ACCEL_UPSTREAM_<COMPONENT>=http://host:port` names a service running it
(`accel serve --component benchmark --port 8002` there); then `GatewayMiddleware` sends each request
under that component's prefixes to it before any in-process route runs. The unified app keeps every
router, so its OpenAPI document lists every component's routes whether forwarded or not.

HTTP: method, path, query, headers and body go up, the body streamed as it arrives; status, headers and
body come back, streamed, raw (a compressed body stays compressed). Hop-by-hop headers (RFC 9110 7.6.1)
are dropped both ways. One shared `httpx.AsyncClient` (no proxies from the environment) keeps the
connections to every upstream. An upstream that refuses or breaks the connection is a 502
`{"error": "upstream_unavailable", ...}`; one that does not answer within ACCEL_UPSTREAM_TIMEOUT_S
(connecting, or between two reads) is a 504 `{"error": "upstream_timeout", ...}`.

WebSocket: the gateway opens its own socket to the upstream, then relays text and binary frames both
ways and the close code either side sends. An upstream that is down closes the client with 1014 (bad
gateway), one that is slow with 1013 (try again later); the reason names the upstream error kind.

Trust: authentication happens once, at the gateway. It authenticates and authorizes the request with
api/auth.py, drops every `X-Accel-*` header the client sent (and the client's key), and forwards with
`X-Accel-Gateway-Secret: <ACCEL_GATEWAY_SECRET>` and `X-Accel-Principal: <the principal as JSON>`. An
upstream started with the same ACCEL_GATEWAY_SECRET (`UpstreamGuard`) answers only requests carrying
it, compared in constant time, and takes the caller from X-Accel-Principal; anything else is a 401 (a
WebSocket: closed with 1008). The secret travels in the environment of both processes, never on a
command line; `accel serve` binds loopback unless told otherwise, so on one machine an upstream is
reachable only from it. Across machines, put the upstream on a private network or behind TLS
(`https://` upstream URLs work as they are): the secret is a bearer credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from fastapi import FastAPI, WebSocketException
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from accel.api.auth import guard
from accel.api.components import COMPONENTS, Component, component_prefixes, owns
from accel.api.errors import error_response
from accel.api.limits import body_cap
from accel.settings import Settings
from accel.tasks.errors import (
    REQUEST_ERRORS,
    AuthenticationError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    error_kind,
    http_status,
)

log = logging.getLogger("accel.api.gateway")

SECRET_HEADER = "x-accel-gateway-secret"
PRINCIPAL_HEADER = "x-accel-principal"
# RFC 9110 7.6.1, plus the proxy's own: never forwarded, whichever way.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
CREDENTIALS = frozenset({"authorization", "x-api-key"})  # checked here; the upstream trusts the gateway instead
WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
# The gateway's server adds its own; two Date headers would reach the client otherwise.
RESPONSE_OWN = frozenset({"date", "server"})
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_BAD_GATEWAY = 1014
WS_MAX_SIZE = 16 * 2**20  # uvicorn's own limit on a frame


@dataclass(frozen=True)
class Upstream:
    component: Component
    url: str  # http(s)://host:port, no trailing slash

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")  # http -> ws, https -> wss


def _request_headers(scope: Scope, drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The client's headers fit to forward: no hop-by-hop ones, no X-Accel-*, no credentials, no Host."""
    raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
    named = {token.strip().lower() for k, v in raw if k == "connection" for token in v.split(",")}
    skip = HOP_BY_HOP | CREDENTIALS | named | {"host", *drop}
    kept = [(k, v) for k, v in raw if k not in skip and not k.startswith("x-accel-")]
    host = next((v for k, v in raw if k == "host"), None)
    # The gateway is the edge: what a client claims in X-Forwarded-* is replaced by what the gateway saw.
    kept = [(k, v) for k, v in kept if not k.startswith("x-forwarded-")]
    if client := scope.get("client"):
        kept.append(("x-forwarded-for", client[0]))
    if host:
        kept.append(("x-forwarded-host", host))
    kept.append(("x-forwarded-proto", scope.get("scheme", "http")))
    return kept


def _target(scope: Scope, base: str) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return base + path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def _has_body(scope: Scope) -> bool:
    return any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])


class _ClientLeft(Exception):  # not an OSError: httpx would take that for the upstream's failure
    pass


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as the client sends it, chunk by chunk (never read whole into memory)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientLeft("the client went away while sending its request")
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return


async def send_error(send: Send, err: Exception) -> None:
    """`err` as the API's `{"error", "detail"}` JSON, straight onto the ASGI channel."""
    headers = dict(getattr(err, "headers", None) or {})  # WWW-Authenticate of a 401, Retry-After of a 429
    if isinstance(err, ServiceUnavailableError):
        headers["Retry-After"] = "5"
    await error_response(http_status(err) or 500, error_kind(err), str(err), headers)(
        {"type": "http"}, _no_receive, send
    )


async def _no_receive() -> Message:  # a JSONResponse never reads the request
    return {"type": "http.disconnect"}


def _upstream_error(upstream: Upstream, err: Exception) -> ServiceUnavailableError:
    where = f"the {upstream.component} service at {upstream.url}"
    if isinstance(err, httpx.TimeoutException | TimeoutError):
        return UpstreamTimeoutError(f"{where} did not answer in time ({type(err).__name__})")
    return UpstreamUnavailableError(f"{where} is unavailable: {type(err).__name__}: {err}".rstrip(": "))


class Gateway:
    """The forwarding of the components served elsewhere: which paths go where, and the one shared client."""

    def __init__(self, upstreams: dict[Component, str], timeout_s: float, secret: str | None):
        self.upstreams = {c: Upstream(c, url.rstrip("/")) for c, url in upstreams.items() if c in COMPONENTS}
        self.prefixes = [(p, u) for u in self.upstreams.values() for p in component_prefixes(u.component)]
        self.timeout_s = timeout_s
        self.secret = secret
        # trust_env=False: an HTTP(S)_PROXY in the environment must not sit between gateway and upstream.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def upstream_for(self, path: str) -> Upstream | None:
        return next((u for prefix, u in self.prefixes if owns(prefix, path)), None)

    def _trust_headers(self, identity: dict[str, str]) -> list[tuple[str, str]]:
        trust = [(SECRET_HEADER, self.secret)] if self.secret else []
        return trust + list(identity.items())

    async def forward_http(
        self, upstream: Upstream, scope: Scope, receive: Receive, send: Send, identity: dict[str, str]
    ) -> None:
        headers = _request_headers(scope) + self._trust_headers(identity)
        request = self.http.build_request(
            scope["method"],
            _target(scope, upstream.url),
            headers=headers,
            content=_body(receive) if _has_body(scope) else None,
        )
        try:
            response = await self.http.send(request, stream=True)
        except (httpx.TransportError, httpx.InvalidURL) as err:
            return await send_error(send, _upstream_error(upstream, err))
        except _ClientLeft:  # mid-body: nobody to answer
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v)
                        for k, v in response.headers.raw
                        if k.lower().decode("latin-1") not in HOP_BY_HOP | RESPONSE_OWN
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError as err:
            # The status is sent: all that is left is to cut the body short, which the client sees as such.
            log.warning("%s %s: %s", scope["method"], scope["path"], _upstream_error(upstream, err))
        finally:
            await response.aclose()

    async def forward_websocket(
        self, upstream: Upstream, websocket: WebSocket, identity: dict[str, str], accepted: bool
    ) -> None:
        headers = _request_headers(websocket.scope, drop=WS_HANDSHAKE) + self._trust_headers(identity)
        subprotocols = [Subprotocol(p) for p in websocket.scope.get("subprotocols") or ()]
        try:
            peer = await connect(
                _target(websocket.scope, upstream.ws_url),
                additional_headers=headers,
                subprotocols=subprotocols or None,
                open_timeout=self.timeout_s,
                proxy=None,
                compression=None,
                max_size=WS_MAX_SIZE,
                user_agent_header=None,
            )
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as err:
            failure = _upstream_error(upstream, err)
            if not accepted:
                await websocket.accept()
            code = CLOSE_TRY_AGAIN if isinstance(failure, UpstreamTimeoutError) else CLOSE_BAD_GATEWAY
            return await websocket.close(code, reason=f"{error_kind(failure)}: {failure}"[:120])
        try:
            if not accepted:
                await websocket.accept(subprotocol=peer.subprotocol)
            await _relay(websocket, peer)
        finally:
            await peer.close()


async def _relay(websocket: WebSocket, peer: ClientConnection) -> None:
    """Frames both ways until either side closes; the close code (and reason) passed on to the other."""

    async def up() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or 1000
                await peer.close(1000 if code in (1005, 1006) else code, message.get("reason") or "")
                return
            if message.get("text") is not None:
                await peer.send(message["text"])
            elif message.get("bytes") is not None:
                await peer.send(message["bytes"])

    async def down() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in peer:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        code = peer.close_code
        # No code from the upstream (1005) is a plain close; a connection that broke off (1006) is a bad gateway.
        code = 1000 if code in (None, 1005) else CLOSE_BAD_GATEWAY if code == 1006 else code
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(code, reason=peer.close_reason or "")

    upward, downward = asyncio.create_task(up()), asyncio.create_task(down())
    tasks = [upward, downward]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if upward in done and isinstance(upward.exception(), websockets.ConnectionClosed):
            # The upstream closed while the client was sending: let its close code reach the client too.
            done |= (await asyncio.wait([downward], timeout=5.0))[0]
        for task in done:
            if (err := task.exception()) is not None and not isinstance(
                err, WebSocketDisconnect | websockets.ConnectionClosed | OSError | RuntimeError
            ):
                raise err
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _route(upstream: Upstream, scope: Scope) -> BaseRoute | None:
    """The component's own route the request names (its path template decides the scope it needs)."""
    for router in COMPONENTS[upstream.component]:
        for route in router.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route
    return None


def _declared_too_large(scope: Scope) -> int | None:
    """The body cap a declared Content-Length exceeds (checked here, where the body is never read whole)."""
    declared = dict(scope["headers"]).get(b"content-length")
    cap = body_cap(scope["path"])
    return cap if declared is not None and declared.isdigit() and int(declared) > cap else None


class GatewayMiddleware:
    """Sends each request under a forwarded component's prefixes to its upstream (`app.state.gateway`).

    The request is admitted first by api/auth.py's `guard`, the same check an in-process route gets (the
    component's route template decides its scope; a WebSocket may authenticate by its first message), and
    goes up with the principal it was admitted as.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway | None = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
        upstream = gateway.upstream_for(scope["path"]) if gateway and scope["type"] in ("http", "websocket") else None
        if upstream is None:
            return await self.app(scope, receive, send)
        route = _route(upstream, scope)
        admitted: Scope = {**scope, "route": route, "state": {}} if route is not None else {**scope, "state": {}}
        if scope["type"] == "http":
            connection = Request(admitted, receive)
            try:
                if (cap := _declared_too_large(scope)) is not None:
                    raise PayloadTooLargeError(
                        f"the request body is larger than this endpoint accepts: at most {cap} bytes"
                    )
                await guard(connection)
            except REQUEST_ERRORS as err:
                return await send_error(send, err)
            identity = {PRINCIPAL_HEADER: principal_json(connection.state.principal)}
            return await gateway.forward_http(upstream, scope, receive, send, identity)
        websocket = WebSocket(admitted, receive, send)
        try:
            await guard(websocket)
        except (WebSocketException, *REQUEST_ERRORS) as err:
            if websocket.client_state == WebSocketState.CONNECTING:
                await websocket.accept()  # accepted, so the client reads the close code and reason
            code = err.code if isinstance(err, WebSocketException) else CLOSE_POLICY
            reason = err.reason if isinstance(err, WebSocketException) else str(err)
            return await websocket.close(code, reason=(reason or "")[:120])
        identity = {PRINCIPAL_HEADER: principal_json(websocket.state.principal)}
        accepted = websocket.client_state != WebSocketState.CONNECTING  # by a first-message authentication
        await gateway.forward_websocket(upstream, websocket, identity, accepted)


class UpstreamGuard:
    """A component served with ACCEL_GATEWAY_SECRET answers only the gateway: a 401 (or 1008) for the rest."""

    def __init__(self, app: ASGIApp, secret: str):
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or secret_matches(scope, self.secret):
            return await self.app(scope, receive, send)
        refused = AuthenticationError(
            "this accel component answers only its gateway (ACCEL_GATEWAY_SECRET): send the request to the gateway"
        )
        if scope["type"] == "http":
            return await send_error(send, refused)
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        await websocket.close(CLOSE_POLICY, reason=str(refused)[:120])


def secret_matches(scope: Scope, secret: str) -> bool:
    """Whether the request carries the gateway's secret (constant-time, so timing tells nothing of it)."""
    sent = next((v for k, v in scope["headers"] if k.lower() == SECRET_HEADER.encode()), b"")
    return hmac.compare_digest(sent, secret.encode())


def principal_json(principal: Any) -> str:
    """The principal as the X-Accel-Principal value: JSON, ASCII (a header is latin-1 on the wire)."""
    return json.dumps(principal.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def open_gateway(settings: Settings, upstreams: dict[str, str]) -> Gateway | None:
    """The gateway of the unified server's lifespan; None when no component is forwarded."""
    if not upstreams:
        return None
    secret = settings.gateway_secret.get_secret_value() if settings.gateway_secret else None
    return Gateway(upstreams, settings.upstream_timeout_s, secret)  # type: ignore[arg-type]


def install_gateway(app: FastAPI, settings: Settings, component: Component | None, upstreams: dict[str, str]) -> None:
    """The unified server forwards `upstreams`; a component served alone with a gateway secret trusts only it."""
    secret = settings.gateway_secret.get_secret_value() if settings.gateway_secret else None
    if component is not None:
        if secret:
            app.add_middleware(UpstreamGuard, secret=secret)
        return
    if not upstreams:
        return
    if settings.auth and not secret:
        raise RuntimeError(
            f"ACCEL_UPSTREAM_{next(iter(upstreams)).upper()} forwards a component, and its service trusts the caller "
            "the gateway names only with ACCEL_GATEWAY_SECRET: set the same secret for both (or ACCEL_AUTH=off)"
        )
    # Inside CORS (a preflight is answered here, every answer carries its headers), outside the body cap,
    # which reads a body whole: a forwarded body streams, capped by its Content-Length here and by the
    # upstream's own cap as it arrives there.
    cors = [i for i, m in enumerate(app.user_middleware) if m.cls is CORSMiddleware]
    app.user_middleware.insert(cors[-1] + 1 if cors else 0, Middleware(GatewayMiddleware))
