"""`accel keys create|list|revoke`: the accel API's keys, in `$ACCEL_HOME/ops.sqlite` on the API's machine.

`create` prints the whole key once; only its hash is stored, so a lost key is revoked and replaced, never
shown again. `accel up` uses `admin_key_on_first_start` and `worker_key` from here: the admin key goes
to `$ACCEL_HOME/admin.key` and the workers' key to `$ACCEL_HOME/worker.key`, each created with mode 0600
(readable by their owner only) before a byte is written.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json
from accel.settings import Settings, get_settings
from accel.storage.keys import SCOPES, KeyNotFoundError, KeyStore
from accel.tasks.errors import RequestError

keys_app = typer.Typer(help="API keys of the accel API on this machine (ACCEL_HOME).", no_args_is_help=True)
WORKER_KEY_FILE = "worker.key"


class KeyRequestError(RequestError):
    """A key that cannot be made or found as asked."""


def _store(settings: Settings | None = None) -> KeyStore:
    return KeyStore((settings or get_settings()).ops_path)


@keys_app.command("create")
def create_command(
    scope: Annotated[list[str], typer.Option("--scope", help=f"One of {', '.join(SCOPES)}; repeat it for several.")],
    name: Annotated[str | None, typer.Option("--name", help="Who or what holds it (shown in runs it starts).")] = None,
    expires: Annotated[float | None, typer.Option("--expires", help="Days until it stops working.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a key and print it once: only its hash is kept."""
    try:
        with _store() as keys:
            record, key = keys.create(scope, name, expires)
    except ValueError as err:
        raise KeyRequestError(str(err)) from None
    if json_output:
        emit_json({"key": key, "record": record})
        return
    console.print(f"key {record.id} ({record.name}), scopes {', '.join(record.scopes)}:")
    console.print(key, soft_wrap=True, highlight=False)
    console.print("[yellow]shown this once: store it now (only its hash is kept)[/]")


@keys_app.command("list")
def list_command(json_output: JsonFlag = False) -> None:
    """Every key: id, name, scopes, created, expires, last used, revoked (never a secret)."""
    with _store() as keys:
        records = keys.list()
    if json_output:
        emit_json(records)
        return
    table = Table("id", "name", "scopes", "created", "expires", "last used", "revoked", "state")
    now = datetime.now(UTC)
    for r in records:
        when = [_when(t) for t in (r.created, r.expires, r.last_used, r.revoked)]
        table.add_row(r.id, r.name, ",".join(r.scopes), *when, r.state(now))
    console.print(table)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@keys_app.command("revoke")
def revoke_command(key_id: Annotated[str, typer.Argument(help="The key's id (see `accel keys list`).")]) -> None:
    """Revoke a key: every request with it is refused from now on."""
    try:
        with _store() as keys:
            record = keys.revoke(key_id)
    except KeyNotFoundError as err:
        raise KeyRequestError(str(err.args[0])) from None
    console.print(f"revoked {record.id} ({record.name})")


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` to a file only its owner can read: created 0600, never readable in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


def _usable(keys: KeyStore, path: Path, scope: str) -> str | None:
    """The key in `path` when it still works and has `scope`."""
    try:
        key = path.read_text().strip()
    except OSError:
        return None
    found = keys.verify(key)
    return key if found.verdict == "ok" and found.record and scope in found.record.scopes else None


def admin_key_on_first_start(settings: Settings) -> tuple[str, bool]:
    """(the admin key in $ACCEL_HOME/admin.key, whether it was made just now). Made when there is none that
    works, so the first `accel up` prints it once and later ones find it there."""
    with _store(settings) as keys:
        if (key := _usable(keys, settings.admin_key_path, "admin")) is not None:
            return key, False
        _, key = keys.create(["admin"], "admin (accel up)")
    write_secret(settings.admin_key_path, key)
    return key, True


def worker_key(settings: Settings) -> str:
    """The key `accel up` hands its workers (worker + read: they send rows and read their runs back)."""
    path = settings.home / WORKER_KEY_FILE
    with _store(settings) as keys:
        if (key := _usable(keys, path, "worker")) is not None:
            return key
        _, key = keys.create(["worker", "read"], "workers (accel up)")
    write_secret(path, key)
    return key
