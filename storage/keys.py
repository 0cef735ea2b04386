"""API keys in SQLite (`$ACCEL_HOME/ops.sqlite`, the seed's "SQLite for operational data"): stdlib only.

A key reads `accel_<id>_<secret>`. The id is public: it finds the key's row by primary key, so a check
never scans the table or compares against other keys' hashes. The secret is `secrets.token_urlsafe(32)`
(256 random bits) and only its SHA-256 is stored. A fast hash is right for a secret of that entropy
(GitHub and Stripe tokens are stored the same way): a slow password hash like bcrypt or argon2 protects
low-entropy secrets that people pick, and here it would only add milliseconds to every request. The
hash is compared with `hmac.compare_digest`. The secret is returned once, by `create`, and never
logged or stored.

`last_used` is written at most once a minute per key. Writing it on every request would put an SQLite
write on the path of every read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

PREFIX = "accel_"
SCOPES = ("read", "run", "worker", "admin")
LAST_USED_EVERY_S = 60.0
_ID_BYTES = 6  # 12 hex characters: the public part

Verdict = Literal["ok", "malformed", "unknown", "revoked", "expired"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created       TEXT NOT NULL,
    expires       TEXT,
    last_used     TEXT,
    revoked       TEXT
)
"""


class KeyNotFoundError(KeyError):
    """No key with that id."""


class ApiKeyRecord(BaseModel):
    """One key as stored and listed: never its secret, nor the secret's hash."""

    id: str
    name: str
    scopes: list[str]
    created: datetime
    expires: datetime | None = None
    last_used: datetime | None = None
    revoked: datetime | None = None

    def state(self, now: datetime | None = None) -> Literal["active", "revoked", "expired"]:
        now = now or datetime.now(UTC)
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"


class Verification(BaseModel):
    """What checking a presented key found: `ok` with its record, or why not."""

    verdict: Verdict
    record: ApiKeyRecord | None = Field(None, description="Set when the id names a key (whatever the verdict)")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of `accel_<id>_<secret>`, or None for anything else."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != 2 * _ID_BYTES or not secret or len(secret) > 256:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


class KeyStore:
    """The keys of one ops database. Thread-safe; one connection, held for the store's life."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}
        # check_same_thread=False: FastAPI calls from its thread pool; the lock serializes use.
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")  # the CLI writes while the API reads
            self._db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _record(row: sqlite3.Row) -> ApiKeyRecord:
        return ApiKeyRecord(
            id=row["id"],
            name=row["name"],
            scopes=row["scopes"].split(","),
            created=_ts(row["created"]),
            expires=_ts(row["expires"]),
            last_used=_ts(row["last_used"]),
            revoked=_ts(row["revoked"]),
        )

    def create(
        self, scopes: Iterable[str], name: str | None = None, expires_days: float | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """A new key: (its record, the whole key). The whole key is shown to its owner once, never again."""
        wanted = sorted(set(scopes), key=SCOPES.index) if set(scopes) <= set(SCOPES) else None
        if not wanted:
            raise ValueError(f"scopes {sorted(set(scopes))} refused: accepted one or more of {', '.join(SCOPES)}")
        if expires_days is not None and not 0 < expires_days <= 3650:
            raise ValueError(f"expires in {expires_days} days refused: accepted more than 0, at most 3650")
        now = datetime.now(UTC)
        key_id, secret = secrets.token_hex(_ID_BYTES), secrets.token_urlsafe(32)
        expires = now + timedelta(days=expires_days) if expires_days is not None else None
        name = (name or f"{'+'.join(wanted)} key").strip()[:200]
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, name, scopes, secret_sha256, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, ",".join(wanted), _hash(secret), now.isoformat(), expires and expires.isoformat()),
            )
        record = ApiKeyRecord(id=key_id, name=name, scopes=wanted, created=now, expires=expires)
        return record, f"{PREFIX}{key_id}_{secret}"

    def get(self, key_id: str) -> ApiKeyRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return self._record(row) if row else None

    def list(self) -> list[ApiKeyRecord]:
        """Every key, oldest first (revoked and expired ones too: they say who did what)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM api_keys ORDER BY created, id").fetchall()
        return [self._record(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key (from now on it authenticates nothing); revoking it again keeps the first time."""
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE id = ?",
                (datetime.now(UTC).isoformat(), key_id),
            )
        record = self.get(key_id)
        if record is None:
            raise KeyNotFoundError(f"no API key {key_id!r} (see `accel keys list`)")
        return record

    def verify(self, token: str, now: datetime | None = None) -> Verification:
        """Check a presented key: its id's row, the secret's hash in constant time, then revoked and expiry."""
        parts = split_token(token)
        if parts is None:
            return Verification(verdict="malformed")
        key_id, secret = parts
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            _hash(secret)  # the same work as a known id: the answer's timing says nothing about which ids exist
            return Verification(verdict="unknown")
        if not hmac.compare_digest(_hash(secret), row["secret_sha256"]):
            return Verification(verdict="unknown")
        record = self._record(row)
        state = record.state(now)
        if state != "active":
            return Verification(verdict=state, record=record)
        self._touch(key_id)
        return Verification(verdict="ok", record=record)

    def _touch(self, key_id: str) -> None:
        moment = time.monotonic()
        last = self._touched.get(key_id)
        if last is not None and moment - last < LAST_USED_EVERY_S:
            return
        self._touched[key_id] = moment
        try:
            with self._lock:
                self._db.execute(
                    "UPDATE api_keys SET last_used = ? WHERE id = ?", (datetime.now(UTC).isoformat(), key_id)
                )
        except sqlite3.OperationalError:  # busy beyond the timeout: last_used is a hint, the request goes on
            self._touched.pop(key_id, None)
