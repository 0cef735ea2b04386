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
Prints latency percentiles per endpoint, errors, the writer's rate and the load average; never asserts.

    .venv/bin/python benchmarks/api_load.py [--rows 1000000] [--duration 30] [--clients 20] [--writer http]
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

from accel.storage import ResultsStore

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


def ingest_http(base: str, stop, counts) -> None:
    """The writer as `accel up` has it: rows POSTed to the API, the file's one writer."""
    rng = random.Random(7)
    n = 0
    with httpx.Client(base_url=base, timeout=120) as client:
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


async def alone(base: str, repeats: int) -> dict[str, list[float]]:
    rng = random.Random(1)
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for kind in KINDS:
            for _ in range(repeats):
                url, params = request_for(kind, rng)
                started = time.perf_counter()
                response = await client.get(url, params=params)
                took[kind].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    return took


async def under_load(base: str, clients: int, duration: float) -> tuple[dict[str, list[float]], dict[str, int]]:
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    failures: dict[str, int] = {}
    deadline = time.perf_counter() + duration

    async def one(i: int) -> None:
        rng = random.Random(100 + i)
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
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
    for kind, values in took.items():
        if not values:
            print(f"  {kind:8s} no request finished")
            continue
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        rate = f", {len(values) / seconds:6.1f} req/s" if seconds else ""
        print(
            f"  {kind:8s} n={len(values):5d}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {max(values):7.1f} ms{rate}"
        )


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
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="accel-api-load-"))
    path = args.db or folder / "results.duckdb"
    print(machine_load())
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
    env = {
        **os.environ,
        "ACCEL_HOME": str(folder / "home"),
        "ACCEL_RESULTS": str(path),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # these routes never ask Prefect
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "accel.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/results/summary", params={"limit": 1}, timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the API did not come up")
        print("  over HTTP:")
        describe(asyncio.run(alone(base, 10)))

        stop = multiprocessing.get_context("spawn").Event()
        written = multiprocessing.get_context("spawn").Array("d", 3)
        writer = None
        if args.writer != "none":
            writer = multiprocessing.get_context("spawn").Process(target=ingest_http, args=(base, stop, written))
            writer.start()
        label = {
            "none": "no writer",
            "http": "another process ingesting through POST /api/results/ingest",
        }[args.writer]
        print(f"\n{args.clients} concurrent clients for {args.duration:.0f} s, {label}:")
        started = time.perf_counter()
        took, failures = asyncio.run(under_load(base, args.clients, args.duration))
        seconds = time.perf_counter() - started
        stop.set()
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
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)  # the built file too, unless --db named it


if __name__ == "__main__":
    main()
