"""The accel API for real, in a thread of the test process: uvicorn on a loopback port, stoppable and restartable.

Auth is on, as in production: `ApiServer.key` is a worker key (worker + read, what `accel up` hands its
workers) created in the server's own ops database; `issue_key` makes a key of any scope in a home.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from accel.api.app import create_app
from accel.settings import Settings
from accel.storage.keys import KeyStore

DEAD_PREFECT = "http://127.0.0.1:9/api"  # ingest and reads never ask Prefect


def issue_key(home: Path, *scopes: str, name: str = "test key") -> str:
    """A new key with `scopes` (default admin) in the ops database of `home`, as `accel keys create` prints it."""
    with KeyStore(Settings(home=home).ops_path) as keys:
        return keys.create(scopes or ("admin",), name)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiServer:
    """`create_app(Settings(...))` served on 127.0.0.1:`port`, writing the DuckDB file `results`."""

    def __init__(self, results: Path, home: Path, port: int | None = None):
        self.results, self.home = results, home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = issue_key(home, "worker", "read", name="test worker")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ApiServer:
        settings = Settings(home=self.home, results=str(self.results), prefect_api_url=DEAD_PREFECT)
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = self._thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
