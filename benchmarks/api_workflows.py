"""The API as its clients use it: start-up, many pipelines POSTed at once, and the WebSocket relay's lag.

1. Start-up: `uvicorn accel.api.app:create_app --factory` to the first 200 on /api/health (goal <= 2 s).
2. Under `accel up` (a real Prefect server, a process worker, the API, in a temporary ACCEL_HOME):
   N pipeline POSTs at once (tiny bert, cpu/onnxruntime, basic level, one short point), each with
   its own Idempotency-Key, then the same N again: N runs, not 2N; every run followed over its
   WebSocket to the end; all finished, none lost or doubled (one chain row per pipeline).
3. Relay lag: each message's `ts` (the Prefect event's `occurred`) to its receipt, p50/p95 (goal
   p95 <= 100 ms).

    .venv/bin/python benchmarks/api_workflows.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from _common import machine_load

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def startup(home: Path, tries: int = 3) -> list[float]:
    seen = []
    for _ in range(tries):
        port = free_port()
        env = {**os.environ, "ACCEL_HOME": str(home), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
        began = time.perf_counter()
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "accel.api.app:create_app", "--factory", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.02)
            seen.append(time.perf_counter() - began)
        finally:
            api.terminate()
            api.wait()
    return seen


def start_up(home: Path, prefect_port: int, api_port: int) -> subprocess.Popen:
    env = {**os.environ, "ACCEL_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    accel = str(Path(sys.executable).with_name("accel"))
    up = subprocess.Popen(
        [accel, "up", "--prefect-port", str(prefect_port), "--api-port", str(api_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    while True:
        line = up.stdout.readline().decode()
        if "Ctrl-C stops everything" in line:
            return up
        if up.poll() is not None or not line:
            raise SystemExit(f"accel up failed: {line}")


async def follow(api_port: int, run_id: str, lags: list[float]) -> str | None:
    """Every message of the run until the server closes; the root's final state type."""
    from websockets.asyncio.client import connect

    final = None
    async with connect(f"ws://127.0.0.1:{api_port}/api/workflows/ws/{run_id}", open_timeout=60) as ws:
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            if message["type"] in ("state", "progress") and message.get("ts"):
                lags.append(received - datetime.fromisoformat(message["ts"]).timestamp())
            if message["type"] == "state" and message["run_id"] == run_id and message.get("state") in FINAL:
                final = message["state"]
    return final


async def storm(api: str, api_port: int, model: str, runs: int, accept_only: bool = False) -> dict:
    body = {
        "models": [model],
        "targets": ["cpu/onnxruntime"],
        "level": "basic",
        "batch_sizes": [1],
        "sequence_lengths": [8],
        "min_seconds": 0.05,
    }
    async with httpx.AsyncClient(base_url=api, timeout=120) as client:

        async def post(i: int) -> httpx.Response:
            return await client.post("/api/workflows/pipeline", json=body, headers={"Idempotency-Key": f"storm-{i}"})

        began = time.perf_counter()
        first = await asyncio.gather(*(post(i) for i in range(runs)))
        accepted_s = time.perf_counter() - began
        again = await asyncio.gather(*(post(i) for i in range(runs)))
        ids = [r.json().get("operation_id") for r in first]
        repeated = [r.json().get("operation_id") for r in again]
        answers = Counter(r.status_code for r in [*first, *again])
        refused = next((r.json() for r in [*first, *again] if r.status_code != 202), None)
        acceptance = {
            "accepted": sum(r.status_code == 202 for r in first),
            "accept_s": accepted_s,
            "distinct": len({i for i in ids + repeated if i}),
            "same_on_retry": sum(a == b for a, b in zip(ids, repeated, strict=True) if a),
            "answers": answers,
            "refused": refused,
        }
        if accept_only:  # the runs are cancelled: only acceptance and idempotency are measured
            for run_id in {i for i in ids if i}:
                await client.post(f"/api/workflows/{run_id}/cancel")
            return acceptance
        lags: list[float] = []
        began = time.perf_counter()
        finals = await asyncio.gather(*(follow(api_port, i, lags) for i in ids if i), return_exceptions=True)
        finished_s = time.perf_counter() - began
        details = [(await client.get(f"/api/workflows/{i}")).json() for i in ids if i]
    return {
        **acceptance,
        "finals": finals,
        "finished_s": finished_s,
        "chains": [len(d.get("results", [])) for d in details],
        "passed": sum(d.get("status") == "completed" for d in details),
        "lags": lags,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--accept-only", action="store_true", help="POST and cancel; do not wait for the runs")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="accel-api-workflows-"))
    model = str(build_tiny_models(work / "models", ["bert"])["bert"])
    times = startup(work / "startup-home")
    print(f"API start-up to the first 200 on /api/health: {', '.join(f'{t:.2f}' for t in times)} s; {machine_load()}")

    home = work / "home"
    prefect_port, api_port = free_port(), free_port()
    up = start_up(home, prefect_port, api_port)
    peak = [0]

    def sample() -> None:
        try:
            tree = [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass

    try:
        loop = asyncio.new_event_loop()

        async def with_sampling() -> dict:
            api = f"http://127.0.0.1:{api_port}"
            task = asyncio.create_task(storm(api, api_port, model, args.runs, args.accept_only))
            while not task.done():
                sample()
                await asyncio.sleep(1)
            return task.result()

        found = loop.run_until_complete(with_sampling())
    finally:
        up.send_signal(15)
        up.wait(timeout=120)
    print(
        f"{args.runs} pipeline POSTs at once: {found['accepted']} accepted in {found['accept_s']:.2f} s; the same "
        f"{args.runs} again with their Idempotency-Keys: {found['same_on_retry']} answered with the same run, "
        f"{found['distinct']} distinct runs in all; answers {dict(found['answers'])}"
        + (f"; first refusal: {found['refused']}" if found["refused"] else "")
    )
    if args.accept_only:
        return
    finals = found["finals"]
    print(
        f"followed to the end over WebSockets in {found['finished_s']:.0f} s: "
        f"{sum(f == 'COMPLETED' for f in finals)} completed, {sum(isinstance(f, Exception) for f in finals)} socket "
        f"errors, {found['passed']} runs completed by /api/workflows, chains per run "
        f"{sorted(set(found['chains']))}; peak RSS of accel up's processes {peak[0] / 2**30:.1f} GiB; {machine_load()}"
    )
    lags = [lag * 1000 for lag in found["lags"]]
    if lags:
        print(
            f"relay lag over {len(lags)} messages: p50 {statistics.median(lags):.0f} ms, "
            f"p95 {pct(lags, 0.95):.0f} ms, max {max(lags):.0f} ms"
        )


if __name__ == "__main__":
    main()
