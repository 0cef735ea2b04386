"""What does Prefect cost? The pipeline for one tiny model on one target, through Prefect and direct.

A: the same task functions called directly (`.fn`): resolve, generate, test (basic), benchmark.
B: the `pipeline` flow, in-process, against a running Prefect server (server start excluded).
Alternated A B A B; overhead = B - A (goal <= 3 s). Then C: trigger to Completed of the `chain/cpu`
deployment with a warm process worker; overhead = that wall time minus the benchmark's own timed
seconds (minimum seconds x rounds x points; goal <= 4 s), split by Prefect's own timestamps: the
worker's pick-up, the flow-run process start, each task, and what follows the last. D: `accel run` of
the same chain as a user runs it (the command, embedded: its local Prefect server kept, the skill reused,
3 rounds of 0.2 s timed), one warm-up then --accel-runs more; overhead = wall minus 0.6 s (goal <= 3 s).

    .venv/bin/python benchmarks/orchestration_overhead.py [--rounds 2] [--deployments 2] [--accel-runs 3]
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
BENCH = {"batches": [1], "seqs": [8], "warmup": 1, "min_iters": 5, "min_seconds": 0.2, "rounds": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def direct(model: str, target: str) -> float:
    from accel.tasks.benchmark import BenchConfig, benchmark_skill
    from accel.tasks.generate_stage import generate_skill
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


def split(flow_run_id) -> list[tuple[str, float]]:
    """Where a deployment's flow run spent its time, from Prefect's own state and task-run timestamps."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(flow_run_id), key=lambda st: st.timestamp)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    first = {}
    for state in states:
        first.setdefault(state.type.value, state.timestamp)
    steps = []
    created, pending, running = first.get("SCHEDULED"), first.get("PENDING"), first.get("RUNNING")
    final = states[-1].timestamp
    if created and pending:
        steps.append(("scheduled -> pending (worker poll, submission)", (pending - created).total_seconds()))
    if pending and running:
        steps.append(("pending -> running (flow-run process start, imports)", (running - pending).total_seconds()))
    cursor = running
    for task in sorted((t for t in tasks if t.start_time), key=lambda t: t.start_time):
        if cursor is not None:
            steps.append((f"  between tasks, before {task.name}", (task.start_time - cursor).total_seconds()))
        end = task.end_time or final
        steps.append((f"  task {task.name}", (end - task.start_time).total_seconds()))
        cursor = end
    if cursor is not None:
        steps.append(("last task -> final state (results, artifacts, exit)", (final - cursor).total_seconds()))
    return steps


def accel_run(model: str, home: Path, runs: int) -> None:
    """D: the `accel run` command, embedded (its own local Prefect server, kept across the runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["ACCEL_HOME"] = str(home)
    command = [str(Path(sys.executable).with_name("accel")), "run", model, "--targets", "cpu/onnxruntime"]
    command += ["--level", "basic", "--batch", "1", "--seq", "8", "--min-seconds", "0.2", "--rounds", "3"]
    timed = 0.2 * 3
    for attempt in range(runs + 1):  # the first starts the local Prefect server and the fork servers
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        total = time.perf_counter() - start
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        label = "warm-up" if attempt == 0 else f"run {attempt}"
        print(f"accel run {label}: {total:.2f} s, overhead {total - timed:.2f} s (timed benchmark seconds {timed:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deployments", type=int, default=2, help="deployment runs after the warm-up")
    parser.add_argument("--skip-direct", action="store_true", help="only the deployment part")
    parser.add_argument("--accel-runs", type=int, default=3, help="accel run (embedded) after its warm-up")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="accel-orchestration-"))
    model = str(build_tiny_models(work / "models", ["bert"])["bert"])
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    from accel.cli.services import with_scripts_on_path

    env = {
        **with_scripts_on_path(dict(os.environ)),  # the worker finds accel-flow-run, as accel up's do
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_API_URL": api,
        "ACCEL_HOME": str(work / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "ACCEL_SHARED_FORK_SERVERS": "1",  # as accel up's and accel worker's workers have it
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
        for round_ in range(0 if args.skip_direct else args.rounds):
            a = direct(model, "cpu/onnxruntime")
            b = through_prefect(model, "cpu/onnxruntime")
            print(f"round {round_ + 1}: direct {a:.2f} s, pipeline flow {b:.2f} s, overhead {b - a:+.2f} s")

        from accel.cli.services import deploy, ensure_pools, worker_command_line

        ensure_pools(api, ["accel-cpu"])
        deploy(ROOT, env, ["chain/cpu"])
        worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 (closed with the worker, below)
        worker = subprocess.Popen(
            worker_command_line("accel-cpu"),
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        from prefect.deployments import run_deployment

        params = {"model": model, "target": "cpu/onnxruntime", "level": "basic", "bench": BENCH}
        timed = BENCH["min_seconds"] * BENCH["rounds"] * len(BENCH["batches"]) * len(BENCH["seqs"])
        for attempt in range(args.deployments + 1):  # the first warms the worker (and its fork servers)
            start = time.perf_counter()
            flow_run = run_deployment("chain/cpu", parameters=params, timeout=300, poll_interval=0.2)
            total = time.perf_counter() - start
            label = "warm-up" if attempt == 0 else f"run {attempt}"
            print(
                f"deployment {label}: trigger -> {flow_run.state.name} in {total:.2f} s, "
                f"overhead {total - timed:.2f} s (timed benchmark seconds {timed:.1f})"
            )
            for step, seconds in split(flow_run.id):
                print(f"    {step:<58} {seconds:6.2f} s")
        cold = (work / "worker.log").read_text(errors="replace").count("starting it cold")
        print(f"flow runs the worker started cold (no warm engine): {cold}")
        accel_run(model, work / "accel-run-home", args.accel_runs)
        print(machine_load())
    finally:
        for process in (worker, server):
            if process is not None:
                os.killpg(process.pid, 9)
                process.wait()


if __name__ == "__main__":
    main()
