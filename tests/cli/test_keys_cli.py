"""`accel keys create|list|revoke` on ACCEL_HOME's ops database, and the key files `accel up` writes."""

from __future__ import annotations

import json
import stat

import pytest

from accel.cli.keys import admin_key_on_first_start, worker_key
from accel.cli.main import run
from accel.settings import get_settings
from accel.storage.keys import KeyStore


def accel(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_create_prints_the_key_once_list_never_shows_it_revoke_ends_it(capsys, accel_home):
    code, out, _ = accel(capsys, "keys", "create", "--scope", "run", "--name", "ci", "--expires", "30", "--json")
    assert code == 0
    made = json.loads(out)
    key, record = made["key"], made["record"]
    assert key.startswith(f"accel_{record['id']}_") and record["scopes"] == ["run"] and record["expires"]
    with KeyStore(accel_home / "ops.sqlite") as keys:
        assert keys.verify(key).verdict == "ok"

    code, out, _ = accel(capsys, "keys", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [k["name"] for k in listed] == ["ci"] and key not in out
    assert set(listed[0]) == {"id", "name", "scopes", "created", "expires", "last_used", "revoked"}
    code, out, _ = accel(capsys, "keys", "list")
    assert code == 0 and record["id"] in out and "active" in out and key not in out

    code, out, _ = accel(capsys, "keys", "revoke", record["id"])
    assert code == 0 and f"revoked {record['id']}" in out
    with KeyStore(accel_home / "ops.sqlite") as keys:
        assert keys.verify(key).verdict == "revoked"
    code, out, _ = accel(capsys, "keys", "create", "--scope", "worker", "--scope", "read")
    assert code == 0 and "shown this once" in out and "accel_" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("keys", "create", "--scope", "root"), "read, run, worker, admin"),
        (("keys", "create", "--scope", "read", "--expires", "0"), "at most 3650"),
        (("keys", "revoke", "000000000000"), "no API key '000000000000'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, says):
    code, out, err = accel(capsys, *args)
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1


def test_accel_up_keys_are_made_once_and_readable_by_their_owner_only(accel_home):
    settings = get_settings()
    admin, new = admin_key_on_first_start(settings)
    assert new and settings.admin_key_path.read_text().strip() == admin
    assert stat.S_IMODE(settings.admin_key_path.stat().st_mode) == 0o600
    assert admin_key_on_first_start(settings) == (admin, False)  # a later start finds it, prints nothing
    worker = worker_key(settings)
    assert worker_key(settings) == worker and stat.S_IMODE((accel_home / "worker.key").stat().st_mode) == 0o600
    with KeyStore(settings.ops_path) as keys:
        assert keys.verify(worker).record.scopes == ["read", "worker"]
        keys.revoke(keys.verify(admin).record.id)
    again, new = admin_key_on_first_start(settings)  # the old one was revoked: a new one, printed again
    assert new and again != admin
    assert settings.client_api_key() == again  # what clients on this machine send by default
