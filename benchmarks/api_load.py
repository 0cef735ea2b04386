"""Read load on the results API: summary, history and compare at 1M measurement rows, while rows are ingested.

1. Builds a DuckDB results file in DuckDB SQL (INSERT ... SELECT FROM range(...)): 50 models x 4 targets
   (200 skills), 20 forward shapes per chain run, so 1,000,000 rows are 50,000 chain runs spread over
   the last 60 days (under 250 nightly pipelines), 3 checks per chain; 5% of points noisy, 2% of
   checks failed.
2. Times each query in-process: on a fresh connection per query (`ResultsStore(path)`, what the CLI
   does) and on a held connection (`ResultsStore(path, hold=True)`, what the API does), to tell query
   cost from the cost of opening the file.
3. Starts the API (uvicorn, `accel.api.app:create_app --factory`) on a free loopback port.
4. Times each endpoint alone over HTTP (one client, no writer).
5. Then for `--duration` s: `--clients` concurrent httpx clients, each cycling summary -> history ->
   compare on random models, while another process POSTs a new chain run of 20 points at a time to
   /api/results/ingest, as `accel up`'s workers do (`--writer none`: no writer). The API holds the file
   open, so no other process can write it directly meanwhile.
6. Auth overhead (`--parts auth`): the same endpoint on two APIs, one with API keys on (a key in the
   header: lookup by id, SHA-256, constant-time compare, scope check) and one with ACCEL_AUTH=off,
   requests alternated between them; and `authenticate` + `authorize` alone, in-process. Goal: <= 1 ms p50.
7. Gateway overhead (`--parts gateway`): a real `accel serve --component results` process, called directly
   (with the gateway's secret) and through a unified `accel serve` that forwards it; WebSocket round trips
   and handshakes on an echo upstream (uvicorn), directly and through the gateway. p50/p95 of each.
Prints latency percentiles per endpoint, errors, the writer's rate and the load average; never asserts.

    .venv/bin/python benchmarks/api_load.py [--rows 1000000] [--duration 30] [--clients 20] [--writer http]
    .venv/bin/python benchmarks/api_load.py --parts auth,gateway [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
from _common import machine_load
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from accel.storage import ResultsStore
from accel.storage.keys import KeyStore

ROOT = Path(__file__).resolve().parents[1]
MODELS, TARGETS = 50, ("cpu/torch", "cpu/onnxruntime", "cpu/openvino", "cpu/torch:bf16")
BATCHES, SEQS = (1, 2, 4, 8, 16), (16, 32, 64, 128)
POINTS = len(BATCHES) * len(SEQS)  # per chain run
DAYS = 60


def build(path: Path, rows: int) -> None:
    """The results file, filled by DuckDB itself (no Python loop over rows)."""
    ResultsStore(path)  # the schema, by the product's own migrations
    skills = MODELS * len(TARGETS)
    chains = rows // POINTS
    pipelines = -(-chains // skills)
    span_s = DAYS * 86400
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SELECT setseed(0.42)")
        con.execute(
            "CREATE TEMP TABLE targets AS SELECT * FROM (VALUES (0, 'cpu/torch', 'cpu', 'torch', 'fp32'), "
            "(1, 'cpu/onnxruntime', 'cpu', 'onnxruntime', 'fp32'), (2, 'cpu/openvino', 'cpu', 'openvino', 'fp32'), "
            "(3, 'cpu/torch:bf16', 'cpu', 'torch', 'bf16')) t(k, target, hardware, runtime, precision)"
        )
        con.execute(
            f"""
            INSERT INTO skills (skill_id, model_ref, family, target, hardware, runtime, precision, manifest, created_at)
            SELECT 'skill-' || i, 'org/model-' || (i // {len(TARGETS)}), 'text-encoder', t.target, t.hardware,
                   t.runtime, t.precision, '{{}}', now() - INTERVAL {DAYS + 1} DAY
            FROM range({skills}) r(i) JOIN targets t ON t.k = i % {len(TARGETS)}
            """
        )
        # chain c belongs to pipeline c // skills and measures skill c % skills, in time order
        con.execute(
            f"""
            INSERT INTO runs (run_id, kind, trigger, status, params, started_at, finished_at)
            SELECT 'pipeline-' || p, 'pipeline', 'schedule', 'completed', '{{}}',
                   now() - INTERVAL {span_s} SECOND + to_seconds(p * {span_s // pipelines}),
                   now() - INTERVAL {span_s} SECOND + to_seconds(p * {span_s // pipelines} + 3600)
            FROM range({pipelines}) r(p)
            """
        )
        step = span_s // pipelines / skills
        con.execute(
            f"""
            INSERT INTO runs (run_id, kind, trigger, status, params, parent_run_id, started_at, finished_at)
            SELECT 'chain-' || c, 'chain', 'deployment', 'completed', '{{}}', 'pipeline-' || (c // {skills}),
                   now() - INTERVAL {span_s} SECOND + to_seconds(c * {step}),
                   now() - INTERVAL {span_s} SECOND + to_seconds(c * {step} + 60)
            FROM range({chains}) r(c)
            """
        )
        con.execute(
            f"""
            INSERT INTO checks (run_id, skill_id, "check", status, max_abs_diff, tolerance, details, recorded_at)
            SELECT 'chain-' || c, 'skill-' || (c % {skills}), ['loads', 'finite', 'parity'][k + 1],
                   CASE WHEN random() < 0.02 THEN 'failed' ELSE 'passed' END, random() * 1e-5, 1e-4, '{{}}',
                   now() - INTERVAL {span_s} SECOND + to_seconds(c * {step} + 10 + k)
            FROM range({chains}) r(c), range(3) k(k)
            """
        )
        con.execute(
            f"""
            INSERT INTO measurements (run_id, skill_id, scenario, batch, seq, status, iterations, mean_ms, p50_ms,
                p90_ms, p95_ms, samples_ms, samples_per_s, tokens_per_s, peak_rss_bytes, flops, mfu, recorded_at,
                cv, threads, noisy, rounds, round_p50_ms, noise_reason, details)
            SELECT 'chain-' || c, 'skill-' || (c % {skills}), 'forward', b, s, 'ok', 50, p50 * 1.02, p50,
                   p50 * 1.1, p50 * 1.2, [p50 * 0.98, p50, p50 * 1.03], b * 1000 / p50, b * s * 1000 / p50,
                   200000000 + b * s * 10000, b * s * 2e8, 0.05 + random() * 0.01,
                   now() - INTERVAL {span_s} SECOND + to_seconds(c * {step} + 20 + i % {POINTS}),
                   0.03, 2, noisy, 3, [p50 * 0.99, p50, p50 * 1.01],
                   CASE WHEN noisy THEN 'foreign CPU share 30% while timing' END, '{{}}'
            FROM (
                SELECT i, i // {POINTS} AS c, [{", ".join(map(str, BATCHES))}][(i % {POINTS}) // {len(SEQS)} + 1] AS b,
                       [{", ".join(map(str, SEQS))}][i % {len(SEQS)} + 1] AS s, random() < 0.05 AS noisy,
                       random() AS jitter
                FROM range({chains * POINTS}) r(i)
            ) points,
            LATERAL (SELECT (1 + (i // {POINTS}) % {skills} % 7) * (0.5 + b * s / 64.0) * (1 + jitter * 0.05) AS p50)
            """
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_key(home: Path) -> str:
    """A key of the API that will serve `home` (its ops database), as `accel keys create --scope admin` makes."""
    with KeyStore(home / "ops.sqlite") as keys:
        return keys.create(["admin"], name="api_load")[1]


def start(command: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """A server; its access log goes to `log` (said when it fails), not between the figures."""
    out = log.open("ab") if log else None
    try:
        return subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=out)
    finally:
        if out:
            out.close()


def uvicorn_api(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "accel.api.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip


def accel_serve(port: int, *component: str) -> list[str]:
    return [sys.executable, "-m", "accel.cli.main", "serve", "--port", str(port), *component]


def wait_up(url: str, headers: dict[str, str], process: subprocess.Popen, log: Path | None = None) -> None:
    for _ in range(600):
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.is_file() else "(its output is above)"
            raise SystemExit(f"{url}: the server exited with {process.returncode}: {tail}")
        try:
            if httpx.get(url, headers=headers, timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def ingest_http(base: str, stop, counts, headers: dict[str, str]) -> None:
    """The writer as `accel up` has it: rows POSTed to the API, the file's one writer."""
    rng = random.Random(7)
    n = 0
    with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
        while not stop.is_set():
            skill = rng.randrange(MODELS * len(TARGETS))
            rows = [
                {
                    "run_id": f"ingest-http-{n}",
                    "skill_id": f"skill-{skill}",
                    "scenario": "forward",
                    "batch": b,
                    "seq": s,
                    "status": "ok",
                    "p50_ms": 1.0 + rng.random(),
                    "round_p50_ms": [1.0, 1.0, 1.0],
                    "rounds": 3,
                    "noisy": False,
                }
                for b in BATCHES
                for s in SEQS
            ]
            started = time.perf_counter()
            client.post("/api/results/ingest", json={"measurements": rows}).raise_for_status()
            with counts.get_lock():
                counts[0] += len(rows)
                counts[1] += 1
                counts[2] += time.perf_counter() - started
            n += 1


def in_process(path: Path, repeats: int) -> None:
    """Each query through ResultsStore on a fresh connection per call (the CLI) and on a held one (the API)."""
    from datetime import UTC, datetime, timedelta

    from accel.storage import queries as q

    since = datetime.now(UTC) - timedelta(days=30)
    work = {
        "summary": lambda store: q.summary(store, q.ResultFilter()),
        "history": lambda store: q.history(store, "org/model-3", "cpu/torch", "p50_ms", since),
        "compare": lambda store: q.speedups(store, "org/model-3", "cpu/torch"),
    }
    for label, hold in (("fresh connection per call (the CLI)", False), ("held connection (the API)", True)):
        store = ResultsStore(path, hold=hold)
        took = {}
        for kind, query in work.items():
            took[kind] = []
            for _ in range(repeats):
                started = time.perf_counter()
                query(store)
                took[kind].append((time.perf_counter() - started) * 1000)
        store.close()
        print(f"  in-process, {label}:")
        describe(took)


def request_for(kind: str, rng: random.Random) -> tuple[str, dict]:
    model = f"org/model-{rng.randrange(MODELS)}"
    if kind == "summary":
        return "/api/results/summary", {}
    if kind == "history":
        return "/api/results/history", {"model": model, "target": rng.choice(TARGETS), "days": 30}
    return "/api/results/compare", {"model": model, "baseline": "cpu/torch"}


KINDS = ("summary", "history", "compare")


async def alone(base: str, repeats: int, headers: dict[str, str]) -> dict[str, list[float]]:
    rng = random.Random(1)
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
        for kind in KINDS:
            for _ in range(repeats):
                url, params = request_for(kind, rng)
                started = time.perf_counter()
                response = await client.get(url, params=params)
                took[kind].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    return took


async def under_load(
    base: str, clients: int, duration: float, headers: dict[str, str]
) -> tuple[dict[str, list[float]], dict[str, int]]:
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    failures: dict[str, int] = {}
    deadline = time.perf_counter() + duration

    async def one(i: int) -> None:
        rng = random.Random(100 + i)
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
            n = i
            while time.perf_counter() < deadline:
                kind = KINDS[n % len(KINDS)]
                n += 1
                url, params = request_for(kind, rng)
                started = time.perf_counter()
                try:
                    response = await client.get(url, params=params)
                except httpx.HTTPError as err:
                    failures[type(err).__name__] = failures.get(type(err).__name__, 0) + 1
                    continue
                took[kind].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    key = f"{kind} {response.status_code}"
                    failures[key] = failures.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    return took, failures


def describe(took: dict[str, list[float]], seconds: float | None = None) -> None:
    width = max(8, *(len(k) for k in took))
    for kind, values in took.items():
        if not values:
            print(f"  {kind:{width}s} no request finished")
            continue
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        rate = f", {len(values) / seconds:6.1f} req/s" if seconds else ""
        print(
            f"  {kind:{width}s} n={len(values):5d}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  "
            f"max {max(values):7.1f} ms{rate}"
        )


def load(args: argparse.Namespace, folder: Path) -> None:
    """Steps 1-5: the results API on 1M rows, alone and under concurrent clients with a writer."""
    path = args.db or folder / "results.duckdb"
    if not path.exists():
        started = time.perf_counter()
        build(path, args.rows)
        print(f"built {path} in {time.perf_counter() - started:.1f} s")
    con = duckdb.connect(str(path))
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("measurements", "runs", "checks")}
    finally:
        con.close()
    size = path.stat().st_size / 2**20
    print(
        f"{counts['measurements']:,} measurements, {counts['runs']:,} runs, {counts['checks']:,} checks; {size:.0f} MiB"
    )

    print("\none client, no writer (the cost of each query):")
    in_process(path, 5)

    port = free_port()
    home = folder / "home"
    headers = {"Authorization": f"Bearer {admin_key(home)}"}
    env = {
        "ACCEL_HOME": str(home),
        "ACCEL_RESULTS": str(path),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # these routes never ask Prefect
        "ACCEL_RATE_LIMIT_PER_MINUTE": "0",  # the writer POSTs as fast as it can
    }
    server = start(uvicorn_api(port), env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/api/results/summary?limit=1", headers, server)
        print("  over HTTP:")
        describe(asyncio.run(alone(base, 10, headers)))

        stop_writer = multiprocessing.get_context("spawn").Event()
        written = multiprocessing.get_context("spawn").Array("d", 3)
        writer = None
        if args.writer != "none":
            writer = multiprocessing.get_context("spawn").Process(
                target=ingest_http, args=(base, stop_writer, written, headers)
            )
            writer.start()
        label = {
            "none": "no writer",
            "http": "another process ingesting through POST /api/results/ingest",
        }[args.writer]
        print(f"\n{args.clients} concurrent clients for {args.duration:.0f} s, {label}:")
        started = time.perf_counter()
        took, failures = asyncio.run(under_load(base, args.clients, args.duration, headers))
        seconds = time.perf_counter() - started
        stop_writer.set()
        if writer is not None:
            writer.join(timeout=120)
        describe(took, seconds)
        print(f"  non-200 or failed requests: {failures or 'none'}")
        if writer is not None:
            rows, calls, spent = written[:]
            mean = f", {spent / calls * 1000:.0f} ms a call" if calls else ""
            print(f"  writer: {rows:,.0f} rows in {calls:.0f} calls ({rows / seconds:,.0f} rows/s{mean})")
        print(machine_load())
    finally:
        stop([server])


# --- 6. auth overhead ------------------------------------------------------------------------------------

HANDSHAKES = 50
CHEAP = "/api/results/runs"  # one indexed read of an empty store: what is left is HTTP and the API's own work


def alternate(targets: dict[str, tuple[str, dict[str, str]]], n: int) -> dict[str, list[float]]:
    """`n` GETs of CHEAP to each (base URL, headers), alternated one by one, so drift on a shared machine
    falls on all alike."""

    async def measure() -> dict[str, list[float]]:
        clients = {
            label: httpx.AsyncClient(base_url=base, headers=headers, timeout=30)
            for label, (base, headers) in targets.items()
        }
        took: dict[str, list[float]] = {label: [] for label in clients}
        try:
            for client in clients.values():  # warm-up: connections, first-call caches
                for _ in range(20):
                    (await client.get(CHEAP, params={"limit": 1})).raise_for_status()
            for _ in range(n):
                for label, client in clients.items():
                    started = time.perf_counter()
                    response = await client.get(CHEAP, params={"limit": 1})
                    took[label].append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
        finally:
            for client in clients.values():
                await client.aclose()
        return took

    return asyncio.run(measure())


def overhead(took: dict[str, list[float]], base: str, other: str) -> None:
    for q in (50, 95):
        delta = np.percentile(took[other], q) - np.percentile(took[base], q)
        print(f"  overhead p{q}: {delta:+.3f} ms ({other} - {base})")


def auth_in_process(n: int, folder: Path) -> None:
    """`authenticate` + `authorize` alone: key lookup by id, SHA-256 of the secret, compare, scope check."""
    from types import SimpleNamespace

    from accel.api.auth import authenticate, authorize, scope_of
    from accel.settings import Settings

    keys = KeyStore(folder / "auth-in-process" / "ops.sqlite")
    _, key = keys.create(["read"], name="api_load")
    on = SimpleNamespace(settings=Settings(home=folder / "auth-in-process"), keys=keys)
    off = SimpleNamespace(settings=Settings(home=folder / "auth-in-process", auth=False), keys=keys)
    cases = {"auth on (key)": (on, {"authorization": f"Bearer {key}"}), "auth off": (off, {})}
    took: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(n):
        for label, (state, headers) in cases.items():
            started = time.perf_counter()
            authorize(authenticate(headers, state, "127.0.0.1"), scope_of("GET", CHEAP))
            took[label].append((time.perf_counter() - started) * 1000)
    keys.close()
    print("  in-process, authenticate + authorize:")
    describe(took)
    overhead(took, "auth off", "auth on (key)")


def auth(args: argparse.Namespace, folder: Path) -> None:
    print(f"\nauth overhead: GET {CHEAP}?limit=1, {args.requests} requests each, alternated:")
    ports = {"auth on (key)": free_port(), "auth off": free_port()}
    homes = {label: folder / f"auth-{i}" for i, label in enumerate(ports)}
    key = admin_key(homes["auth on (key)"])
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "ACCEL_RATE_LIMIT_PER_MINUTE": "0"}
    servers = {
        label: start(
            uvicorn_api(port),
            {**env, "ACCEL_HOME": str(homes[label]), "ACCEL_AUTH": "on" if "on" in label else "off"},
        )
        for label, port in ports.items()
    }
    headers = {"auth on (key)": {"Authorization": f"Bearer {key}"}, "auth off": {}}
    try:
        for label, port in ports.items():
            wait_up(f"http://127.0.0.1:{port}{CHEAP}", headers[label], servers[label])

        targets = {label: (f"http://127.0.0.1:{port}", headers[label]) for label, port in ports.items()}
        took = alternate(targets, args.requests)
        print("  over HTTP:")
        describe(took)
        overhead(took, "auth off", "auth on (key)")
    finally:
        stop(list(servers.values()))
    auth_in_process(args.requests * 10, folder)


# --- 7. gateway overhead ---------------------------------------------------------------------------------


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(message.get("text") or "")


# The WebSocket upstream: frames back as they came (`uvicorn api_load:echo_app --app-dir benchmarks`).
echo_app = Starlette(routes=[WebSocketRoute("/api/benchmark/ws/{run_id}", _echo)])


async def socket_rounds(url: str, headers: dict[str, str], n: int, handshakes: int) -> dict[str, list[float]]:
    """Round trips of a 100-byte text frame on one socket, then whole handshakes (connect, one round, close)."""
    frame = "x" * 100
    rounds, opens = [], []
    async with connect(url, additional_headers=headers, proxy=None, compression=None) as ws:
        for i in range(n + 20):
            started = time.perf_counter()
            await ws.send(frame)
            assert await ws.recv() == frame
            if i >= 20:  # warm-up left out
                rounds.append((time.perf_counter() - started) * 1000)
    for _ in range(handshakes):
        started = time.perf_counter()
        async with connect(url, additional_headers=headers, proxy=None, compression=None) as ws:
            await ws.send(frame)
            await ws.recv()
        opens.append((time.perf_counter() - started) * 1000)
    return {"ws round trip": rounds, "ws connect+1+close": opens}


def gateway(args: argparse.Namespace, folder: Path) -> None:
    import json

    secret = "api-load-" + os.urandom(16).hex()
    ports = {"results": free_port(), "echo": free_port(), "gateway": free_port()}
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "ACCEL_RATE_LIMIT_PER_MINUTE": "0"}
    gateway_home = folder / "gateway"
    key = admin_key(gateway_home)
    upstream = f"http://127.0.0.1:{ports['results']}"
    echo = f"http://127.0.0.1:{ports['echo']}"
    servers = [
        start(
            accel_serve(ports["results"], "--component", "results"),
            {**env, "ACCEL_HOME": str(folder / "upstream"), "ACCEL_GATEWAY_SECRET": secret},
            folder / "upstream.log",
        ),
        start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api_load:echo_app",
                "--app-dir",
                str(ROOT / "benchmarks"),
                "--port",
                str(ports["echo"]),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            {},
            folder / "echo.log",
        ),
        start(
            accel_serve(ports["gateway"]),
            {
                **env,
                "ACCEL_HOME": str(gateway_home),
                "ACCEL_GATEWAY_SECRET": secret,
                "ACCEL_UPSTREAM_RESULTS": upstream,
                "ACCEL_UPSTREAM_BENCHMARK": echo,
            },
            folder / "gateway.log",
        ),
    ]
    through = f"http://127.0.0.1:{ports['gateway']}"
    # Straight to the upstream, a client must say what the gateway says: its secret and a principal.
    as_gateway = {
        "X-Accel-Gateway-Secret": secret,
        "X-Accel-Principal": json.dumps({"key_id": "api_load", "name": "api_load", "scopes": ["admin"]}),
    }
    with_key = {"Authorization": f"Bearer {key}"}
    try:
        wait_up(f"{upstream}{CHEAP}", as_gateway, servers[0], folder / "upstream.log")
        wait_up(f"{through}{CHEAP}", with_key, servers[2], folder / "gateway.log")
        print(f"\ngateway overhead: GET {CHEAP}?limit=1, {args.requests} requests each, alternated:")

        took = alternate({"direct": (upstream, as_gateway), "through the gateway": (through, with_key)}, args.requests)
        describe(took)
        overhead(took, "direct", "through the gateway")
        print(f"\ngateway overhead, WebSocket ({args.requests} round trips, {HANDSHAKES} handshakes):")
        ws_path = "/api/benchmark/ws/bench"
        direct = asyncio.run(socket_rounds(f"ws://127.0.0.1:{ports['echo']}{ws_path}", {}, args.requests, HANDSHAKES))
        gated = asyncio.run(
            socket_rounds(f"ws://127.0.0.1:{ports['gateway']}{ws_path}", with_key, args.requests, HANDSHAKES)
        )
        took = {f"{k} direct": v for k, v in direct.items()} | {f"{k} gateway": v for k, v in gated.items()}
        describe(took)
        for kind in direct:
            overhead(took, f"{kind} direct", f"{kind} gateway")
        print(machine_load())
    finally:
        stop(servers)


PARTS = {"load": load, "auth": auth, "gateway": gateway}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of concurrent load")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--writer",
        choices=("http", "none"),
        default="http",
        help="http: another process POSTs rows to /api/results/ingest (the API is the file's one writer and "
        "holds it open, as under `accel up`); none: no writer",
    )
    parser.add_argument("--db", type=Path, help="reuse (or build once at) this results file")
    parser.add_argument(
        "--parts", default="load,auth,gateway", help=f"which parts, comma-separated: {', '.join(PARTS)}"
    )
    parser.add_argument("--requests", type=int, default=500, help="requests per side in the auth and gateway parts")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown part {', '.join(unknown)}: accepted {', '.join(PARTS)}")

    folder = Path(tempfile.mkdtemp(prefix="accel-api-load-"))
    print(machine_load())
    try:
        for part in parts:
            PARTS[part](args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the built file too, unless --db named it


if __name__ == "__main__":
    main()
