"""The local Prefect server `accel run` keeps: started once, found by the next run, stopped when idle."""

from __future__ import annotations

import json
import os
import time

from accel.cli.local_prefect import local_prefect_api
from accel.settings import get_settings


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_next_run_finds_the_server_the_first_started_and_an_idle_one_stops(monkeypatch):
    monkeypatch.setenv("ACCEL_LOCAL_PREFECT_IDLE_S", "2")
    settings = get_settings()
    url = local_prefect_api(settings)
    state_file = settings.prefect_home / "local-server.json"
    state = json.loads(state_file.read_text())
    try:
        assert url.startswith("http://127.0.0.1:") and state["url"] == url and _alive(state["pid"])
        assert local_prefect_api(settings) == url  # found, not started again
        assert json.loads(state_file.read_text())["pid"] == state["pid"]
        deadline = time.monotonic() + 60
        while _alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(state["pid"]), "the watchdog left an idle server running"
        assert not state_file.exists()
    finally:
        if _alive(state["pid"]):
            os.killpg(state["pid"], 9)
