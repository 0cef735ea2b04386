"""`accel serve`: the unified API server, or one component's API alone (`--component benchmark`).

The unified server is what `accel up` runs: every component in-process, except those an
ACCEL_UPSTREAM_<COMPONENT>=http://host:port forwards to a service started here with `--component`
(api/gateway.py). Both bind loopback unless `--host` (or ACCEL_API_HOST) says otherwise.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from accel.api.component_names import COMPONENT_NAMES, check_component
from accel.cli.output import err_console
from accel.cli.services import _port_free, _reachable
from accel.settings import describe_invalid, get_settings
from accel.tasks.errors import RequestError


def serve_command(
    component: Annotated[
        str | None,
        typer.Option("--component", help=f"Serve this component alone: {', '.join(COMPONENT_NAMES)}."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on (default ACCEL_API_PORT).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default ACCEL_API_HOST, 127.0.0.1).")
    ] = None,
) -> None:
    """Serve the accel API: every component (forwarding those ACCEL_UPSTREAM_* name), or one with --component."""
    import uvicorn

    from accel.api.app import create_app

    try:
        settings = get_settings()
    except ValidationError as err:  # a bad ACCEL_* value: said in one line, not a traceback
        raise RequestError(describe_invalid(err)) from None
    chosen = check_component(component) if component is not None else None
    host = host or settings.api_host
    port = port or settings.api_port
    if not _port_free(_reachable(host), port):
        raise RequestError(f"port {port} on {host} is taken; choose another with --port")
    try:
        app = create_app(settings, component=chosen)
    except RuntimeError as err:  # settings the app refuses to start with, said in one line
        raise RequestError(str(err)) from None
    if chosen is not None:
        trust = "only the gateway (ACCEL_GATEWAY_SECRET)" if settings.gateway_secret else "its own API keys"
        err_console.print(f"accel {chosen} component on http://{host}:{port}, trusting {trust}")
    else:
        for name, url in settings.upstreams.items():
            err_console.print(f"{name:9s} forwarded to {url}")
    uvicorn.run(app, host=host, port=port, log_level="info")
