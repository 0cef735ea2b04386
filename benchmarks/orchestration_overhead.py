"""What does Prefect cost? The pipeline for one tiny model on one target, through Prefect and direct.

A: the same task functions called directly (`.fn`): resolve, generate, test (basic), benchmark.
B: the `pipeline` flow, in-process, against a running Prefect server (server start excluded).
Alternated A B A B; overhead = B - A (goal <= 3 s). Then C: trigger to Completed of the `chain/cpu`
deployment with a warm process worker (goal <= 8 s), split into waiting for the worker and the
chain's own run time.

    .venv/bin/python benchmarks/orchestration_overhead.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import machine_load

ROOT = Path(__file__).resolve().parents[1]
BENCH = {"batches": [1], "seqs": [8], "warmup": 1, "min_iters": 5, "min_seconds": 0.2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def direct(model: str, target: str) -> float:
    from accel.tasks.benchmark import BenchConfig, benchmark_skill
    from accel.tasks.generate import generate_skill
    from accel.tasks.validate import validate_skill

    start = time.perf_counter()
    skill = generate_skill.fn(model, target)
    validate_skill.fn(str(skill.path), "basic")
    benchmark_skill.fn(str(skill.path), BenchConfig.model_validate(BENCH))
    return time.perf_counter() - start


def through_prefect(model: str, target: str) -> float:
    from accel.flows.pipeline import pipeline

    start = time.perf_counter()
    result = pipeline(models=[model], targets=[target], level="basic", bench=BENCH)
    assert result.status == "passed", result
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="accel-orchestration-"))
    model = str(build_tiny_models(work / "models", ["bert"])["bert"])
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_API_URL": api,
        "ACCEL_HOME": str(work / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL", "ACCEL_HOME")})
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        print(f"tiny bert on cpu/onnxruntime; {machine_load()}")
        direct(model, "cpu/onnxruntime")  # generate once, warm caches
        for round_ in range(args.rounds):
            a = direct(model, "cpu/onnxruntime")
            b = through_prefect(model, "cpu/onnxruntime")
            print(f"round {round_ + 1}: direct {a:.2f} s, pipeline flow {b:.2f} s, overhead {b - a:+.2f} s")

        from accel.cli.services import deploy, ensure_pools, worker_command_line

        ensure_pools(api, ["accel-cpu"])
        deploy(ROOT, env, ["chain/cpu"])
        worker = subprocess.Popen(
            worker_command_line("accel-cpu"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        params = {"model": model, "target": "cpu/onnxruntime", "level": "basic", "bench": BENCH}
        for attempt in range(3):  # the first warms the worker
            start = time.perf_counter()
            flow_run = run_deployment("chain/cpu", parameters=params, timeout=300, poll_interval=0.5)
            total = time.perf_counter() - start
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run.id)
            waited = (run.start_time - run.created).total_seconds()
            label = "warm-up" if attempt == 0 else f"run {attempt}"
            print(
                f"deployment {label}: trigger -> {run.state.name} in {total:.2f} s "
                f"(waiting for the worker {waited:.2f} s, the chain itself {run.total_run_time.total_seconds():.2f} s)"
            )
        print(machine_load())
    finally:
        for process in (worker, server):
            if process is not None:
                os.killpg(process.pid, 9)
                process.wait()


if __name__ == "__main__":
    main()
