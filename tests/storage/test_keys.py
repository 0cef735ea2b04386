"""The key store: a key is shown once and only its hash is kept; a check finds the row by the key's id."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from accel.storage.keys import KeyNotFoundError, KeyStore, split_token


@pytest.fixture
def keys(tmp_path):
    with KeyStore(tmp_path / "ops.sqlite") as store:
        yield store


def test_a_key_is_stored_as_the_hash_of_its_secret_only(keys, tmp_path):
    record, key = keys.create(["run"], "alice")
    key_id, secret = split_token(key)
    assert key.startswith("accel_") and key_id == record.id and len(secret) >= 43  # 32 random bytes
    rows = sqlite3.connect(tmp_path / "ops.sqlite").execute("SELECT * FROM api_keys").fetchall()
    assert len(rows) == 1 and secret not in repr(rows) and key not in repr(rows)
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]
    assert "secret" not in record.model_dump() and key not in repr(record)
    found = keys.verify(key)
    assert found.verdict == "ok" and found.record.id == record.id and found.record.scopes == ["run"]
    assert keys.create(["run"])[1] != key  # every key is new


@pytest.mark.parametrize(
    ("mangle", "verdict"),
    [
        (lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), "unknown"),  # the right id, a wrong secret
        (lambda k: "accel_000000000000_" + k.rpartition("_")[2], "unknown"),  # an id nobody has
        (lambda k: "nope", "malformed"),
        (lambda k: k.replace("accel_", "other_"), "malformed"),
        (lambda k: "accel_" + "x" * 12 + "_s", "malformed"),
    ],
)
def test_a_wrong_key_is_refused(keys, mangle, verdict):
    _, key = keys.create(["read"])
    found = keys.verify(mangle(key))
    assert found.verdict == verdict and found.record is None  # nothing said about keys it did not prove


def test_revoked_and_expired_keys_are_refused_and_say_so(keys, tmp_path):
    revoked, revoked_key = keys.create(["admin"], "gone")
    assert keys.revoke(revoked.id).revoked is not None
    first = keys.get(revoked.id).revoked
    assert keys.revoke(revoked.id).revoked == first  # revoking again keeps the first time
    assert keys.verify(revoked_key).verdict == "revoked"

    expiring, expiring_key = keys.create(["read"], expires_days=1)
    assert keys.verify(expiring_key).verdict == "ok"
    assert keys.verify(expiring_key, now=datetime.now(UTC) + timedelta(days=2)).verdict == "expired"
    with pytest.raises(KeyNotFoundError, match="accel keys list"):
        keys.revoke("000000000000")
    states = {r.name: r.state() for r in keys.list()}
    assert states == {"gone": "revoked", expiring.name: "active"}


def test_bad_scopes_and_expiries_are_refused(keys):
    for scopes in ([], ["root"], ["read", "sudo"]):
        with pytest.raises(ValueError, match="read, run, worker, admin"):
            keys.create(scopes)
    with pytest.raises(ValueError, match="at most 3650"):
        keys.create(["read"], expires_days=0)
    record, _ = keys.create(["admin", "read", "worker"])
    assert record.scopes == ["read", "worker", "admin"]  # in the table's order, once each


def test_last_used_is_written_at_most_once_a_minute(keys, tmp_path):
    record, key = keys.create(["read"])
    assert keys.get(record.id).last_used is None
    keys.verify(key)
    first = keys.get(record.id).last_used
    assert first is not None
    for _ in range(5):
        keys.verify(key)
    assert keys.get(record.id).last_used == first  # no write per request
    with KeyStore(tmp_path / "ops.sqlite") as other:  # another process (the CLI) sees the same keys
        assert other.verify(key).verdict == "ok"
        other.revoke(record.id)
    assert keys.verify(key).verdict == "revoked"  # at once: nothing cached
