"""`accel up` as a user starts it: a real Prefect server, a real process worker, the API; one pipeline
POSTed over HTTP, followed over the WebSocket to the end, its rows read back from the results API."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from websockets.sync.client import connect

from accel.hardware import HARDWARE
from tests.fork_servers import fork_servers_of


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_up(home: Path, prefect_port: int, api_port: int, models_dir: Path) -> tuple[subprocess.Popen, str]:
    """`accel up` started, and what it printed up to "Ctrl-C stops everything"."""
    env = {**os.environ, "ACCEL_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    env["ACCEL_MODELS_DIR"] = str(models_dir)  # the tiny models: model paths outside it are refused
    for name in ("PREFECT_API_URL", "ACCEL_API_KEY"):
        env.pop(name, None)
    up = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("accel")),
            "up",
            "--prefect-port",
            str(prefect_port),
            "--api-port",
            str(api_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = up.stdout.readline().decode()
        lines.append(line)
        if "Ctrl-C stops everything" in line or up.poll() is not None:
            break
    assert "Ctrl-C stops everything" in "".join(lines), "".join(lines)[-3000:]
    return up, "".join(lines)


def test_a_pipeline_posted_to_accel_up_is_followed_live_and_read_back(tmp_path, tiny_models):
    home = tmp_path / "home"
    prefect_port, api_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}"
    model = str(tiny_models["bert"])
    up, printed = _start_up(home, prefect_port, api_port, tiny_models["bert"].parent)
    children = psutil.Process(up.pid).children(recursive=True)
    try:
        assert len(children) >= 3  # server, a worker per hardware, the API
        # auth is on from the first start: the admin key printed once, kept in a file only its owner reads
        key = (home / "admin.key").read_text().strip()
        assert printed.count(key) == 1 and stat.S_IMODE((home / "admin.key").stat().st_mode) == 0o600
        assert httpx.get(f"{api}/api/workflows", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        health = httpx.get(f"{api}/api/health", headers=auth, timeout=5).json()
        assert health["status"] == "ok" and health["prefect"]["status"] == "ok", health
        prefect = f"http://127.0.0.1:{prefect_port}/api"
        deployments = httpx.post(f"{prefect}/deployments/filter", json={}, timeout=10).json()
        # a chain and each stage (generate, test, benchmark) per hardware pool, the pipeline and the nightly
        assert len(deployments) == 4 * len(HARDWARE) + 2
        nightly = next(d for d in deployments if d["name"] == "nightly")
        assert nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
        pools = {p["name"] for p in httpx.post(f"{prefect}/work_pools/filter", json={}, timeout=10).json()}
        assert {"accel-cpu", "accel-cuda"} <= pools

        body = {
            "models": [model],
            "targets": ["cpu/onnxruntime"],
            "level": "basic",
            "batch_sizes": [1],
            "sequence_lengths": [8],
            "min_seconds": 0.05,
        }
        started = httpx.post(
            f"{api}/api/workflows/pipeline", json=body, headers={**auth, "Idempotency-Key": "e2e-1"}, timeout=30
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["operation_id"]
        again = httpx.post(
            f"{api}/api/workflows/pipeline", json=body, headers={**auth, "Idempotency-Key": "e2e-1"}, timeout=30
        )
        assert again.json()["operation_id"] == run_id  # a retried POST is the same run

        messages = []
        with connect(f"ws://127.0.0.1:{api_port}/api/workflows/ws/{run_id}", open_timeout=30) as ws:
            ws.send(json.dumps({"type": "auth", "token": key}))  # the first message, as Prefect's events socket
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    messages.append(json.loads(ws.recv(timeout=deadline - time.monotonic())))
                except Exception:  # closed by the server after the final state (or the deadline)
                    break
        assert messages and messages[0] == {"type": "auth_success"}, messages[:3]
        messages = messages[1:]
        assert messages and messages[0]["type"] == "snapshot", messages[:3]
        seqs = [m["seq"] for m in messages]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        root_final = [
            m
            for m in messages
            if m["type"] == "state"
            and m["run_id"] == run_id
            and m["state"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        ]
        assert len(root_final) == 1 and root_final[0]["status"] == "completed", messages[-5:]
        assert any(m["run_id"] != run_id for m in messages), "no message of the chain the pipeline started"
        [result] = [m for m in messages if m["type"] == "result"]  # after the final state: what the run recorded
        assert messages[-1] is result and [r["status"] for r in result["results"]] == ["passed"], result
        assert any(m["type"] == "progress" for m in messages)

        run = httpx.get(f"{api}/api/workflows/{run_id}", headers=auth, timeout=30).json()
        assert run["status"] == "completed" and [r["status"] for r in run["results"]] == ["passed"], run
        assert run["started_by"]["name"] == "admin (accel up)"
        summary = httpx.get(f"{api}/api/results/summary", params={"model": model}, headers=auth, timeout=30).json()
        rows = summary["rows"] if isinstance(summary, dict) and "rows" in summary else summary
        assert any(r["target"] == "cpu/onnxruntime" and r["p50_ms"] > 0 for r in rows), summary
        # the worker wrote through the API: one results file (the API's), nothing waiting in an outbox
        assert sorted(p.name for p in home.rglob("*.duckdb")) == ["results.duckdb"]
        assert not any(p.stat().st_size for p in (home / "outbox").glob("*")) if (home / "outbox").exists() else True
        # the worker's flow runs started warm: forked by the engine's server that its first flow run started
        engines = [p for p in fork_servers_of(home) if "prefect.engine" in p.info["cmdline"]]
        assert len(engines) == 1, [p.info["cmdline"] for p in engines]
    finally:
        up.send_signal(15)
        code = up.wait(timeout=60)
        for server in fork_servers_of(home):  # shared ones outlive accel up (until idle): not this test's
            server.kill()
    assert code == 0
    time.sleep(0.5)
    left = [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes left behind: {left}"
