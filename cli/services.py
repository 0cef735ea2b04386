"""`accel up` and `accel worker`: Prefect server, work pools, deployments, workers and the API on this machine.

Every child runs in its own process group with SIGINT restored to its default (a worker that inherits
an ignored SIGINT never stops), and is stopped with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from accel.cli.keys import admin_key_on_first_start, worker_key
from accel.cli.output import console, err_console
from accel.hardware import HARDWARE, detect, work_pool_name
from accel.settings import get_settings, project_root
from accel.tasks.errors import SkillDirError

STOP_GRACE_S = 15.0


def _executable(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Supervisor:
    log_dir: Path
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it until it exits)
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        log.close()
        self.children.append((name, process))
        return process

    def dead(self) -> list[str]:
        return [f"{name} (exit {p.returncode})" for name, p in self.children if p.poll() is not None]

    def stop(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for _, process in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever is left of the group (flow runs a worker started, a stubborn child) goes now.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_http(url: str, process: subprocess.Popen, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-5:]) if log.is_file() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode}: {tail}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer {url} within {timeout_s:.0f} s (log: {log})")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def ensure_pools(api_url: str, names: list[str]) -> None:
    """Create the process work pools `names` on the server at `api_url` (those that exist are kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for name in names:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_pool(
                    WorkPoolCreate(
                        name=name, type="process", description=f"accel: chains for {name.removeprefix('accel-')}"
                    )
                )


def deploy(root: Path, env: dict[str, str], names: list[str] | None = None, timeout_s: float | None = None) -> None:
    """`prefect deploy` the deployments `names` of root/prefect.yaml (all when None); RuntimeError if it fails."""
    selection = [arg for name in names for arg in ("-n", name)] if names else ["--all"]
    deployed = subprocess.run(
        [_executable("prefect"), "--no-prompt", "deploy", *selection, "--prefect-file", str(root / "prefect.yaml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if deployed.returncode != 0:
        raise RuntimeError(f"prefect deploy failed: {(deployed.stdout + deployed.stderr).strip()[-2000:]}")


def worker_command_line(pool: str, name: str | None = None) -> list[str]:
    """The `prefect worker start` command of a process worker on `pool` (named after this host by default)."""
    name = name or f"{pool}-{socket.gethostname()}"
    return [_executable("prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", name]


def with_scripts_on_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with this interpreter's scripts folder first on PATH: where a worker finds `accel-flow-run`,
    the command prefect.yaml's deployments run for each flow run (flows/warm_engine)."""
    scripts = str(Path(sys.executable).parent)
    return {**env, "PATH": os.pathsep.join([scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p)])}


def _service_env(api_url: str) -> dict[str, str]:
    settings = get_settings()
    env = {
        **with_scripts_on_path(dict(os.environ)),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "ACCEL_HOME": str(settings.home),
        # A worker's flow runs fork their check and benchmark processes from fork servers shared across
        # runs (tasks/isolated): only the first run of the machine pays for importing torch and transformers.
        "ACCEL_SHARED_FORK_SERVERS": "1",
    }
    if (root := project_root()) is not None:
        env["ACCEL_PROJECT_DIR"] = str(root)
    return env


def _reachable(host: str) -> str:
    """The address a local client dials for a server bound to `host` (a wildcard bind: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def up_command(
    prefect_port: Annotated[
        int, typer.Option("--prefect-port", min=1, max=65535, help="Port of the Prefect server.")
    ] = 4200,
    api_port: Annotated[
        int | None, typer.Option("--api-port", min=1, max=65535, help="Port of the accel API (ACCEL_API_PORT).")
    ] = None,
    workers: Annotated[bool, typer.Option("--workers/--no-workers", help="Start a worker per hardware here.")] = True,
) -> None:
    """Start Prefect (server, work pools, deployments, one worker per hardware here) and the API; Ctrl-C stops all."""
    settings = get_settings()
    api_port = api_port or settings.api_port
    if not 1 <= api_port <= 65535:
        raise SkillDirError(f"ACCEL_API_PORT={api_port} is not a port: accepted 1-65535")
    host = "127.0.0.1"
    for port, what in ((prefect_port, "--prefect-port"), (api_port, "--api-port")):
        if not _port_free(host, port):
            raise SkillDirError(f"port {port} on {host} is taken (another accel up?); choose another with {what}")
    if settings.results_url is not None:
        raise SkillDirError(
            f"ACCEL_RESULTS={settings.results_url}: accel up runs the API that writes the results file itself; "
            "unset ACCEL_RESULTS (or point it at a DuckDB file), or join that API's team with `accel worker`"
        )
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://{host}:{prefect_port}/api"
    env = _service_env(api_url)
    # The API is the one process that writes the DuckDB file; everything else sends it rows over HTTP.
    api_env = {**env, "ACCEL_RESULTS": str(settings.results_path)}
    # Auth is on from the first start: an admin key for the person (printed once, kept in a 0600 file) and a
    # worker key (worker + read) for the workers started here, which send their rows with it.
    admin_key, admin_is_new = admin_key_on_first_start(settings)
    worker_env = {
        **env,
        "ACCEL_RESULTS": f"http://{_reachable(settings.api_host)}:{api_port}",
        "ACCEL_API_KEY": worker_key(settings),
    }
    supervisor = Supervisor(settings.home / "logs")
    stopping = {"signal": None}

    def request_stop(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        err_console.print(f"starting the Prefect server ({settings.prefect_home}) ...")
        server = supervisor.start(
            "prefect-server",
            [_executable("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
            env,
        )
        _wait_http(f"{api_url}/health", server, 180, "the Prefect server", supervisor.log_dir / "prefect-server.log")
        ensure_pools(api_url, [work_pool_name(hw) for hw in HARDWARE])
        root = project_root()
        if root is None:
            err_console.print("[yellow]no prefect.yaml (accel is not running from a checkout): no deployments[/]")
        else:
            err_console.print("deploying prefect.yaml ...")
            deploy(root, env)
        api = supervisor.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "accel.api.app:create_app",
                "--factory",
                "--host",
                settings.api_host,
                "--port",
                str(api_port),
            ],
            api_env,
        )
        _wait_http(
            f"http://{_reachable(settings.api_host)}:{api_port}/api/health",
            api,
            60,
            "the accel API",
            supervisor.log_dir / "api.log",
        )
        # Workers start once the API answers: the rows of their first flow runs go straight to it.
        hardware = detect().hardware if workers else []
        for hw in hardware:
            supervisor.start(f"worker-{hw}", worker_command_line(work_pool_name(hw)), worker_env)
        console.print(f"Prefect UI   http://{host}:{prefect_port}")
        console.print(f"Prefect API  {api_url}")
        console.print(f"accel API    http://{settings.api_host}:{api_port}/api/health")
        console.print(f"workers      {', '.join(work_pool_name(hw) for hw in hardware) or 'none'}")
        console.print(f"results      {settings.results_path} (written by the API; workers send to it)")
        if admin_is_new:
            console.print(f"admin key    {admin_key}", soft_wrap=True, highlight=False)
            console.print(f"             shown this once; kept in {settings.admin_key_path} (only you can read it)")
        else:
            console.print(f"admin key    in {settings.admin_key_path}")
        console.print(f"logs         {supervisor.log_dir}")
        console.print("Ctrl-C stops everything.")
        sys.stdout.flush()
        while stopping["signal"] is None:
            if dead := supervisor.dead():
                err_console.print(f"[red]stopped unexpectedly: {', '.join(dead)}; stopping the rest[/]")
                raise typer.Exit(1)
            time.sleep(0.5)
        err_console.print("stopping ...")
    except RuntimeError as err:
        err_console.print(f"[red]accel up failed: {err}[/]")
        raise typer.Exit(1) from None
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_command(
    hardware: Annotated[str, typer.Option("--hardware", help=f"Which pool to serve: {', '.join(HARDWARE)}.")],
) -> None:
    """Join this machine to a Prefect server (PREFECT_API_URL) as the worker of one hardware pool."""
    if hardware not in HARDWARE:
        raise SkillDirError(f"unknown hardware {hardware!r}: accepted {', '.join(HARDWARE)}")
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise SkillDirError(
            "PREFECT_API_URL is not set: point it at the server's API, e.g. "
            "PREFECT_API_URL=http://prefect-host:4200/api accel worker --hardware cuda"
        )
    if hardware not in detect().hardware:
        raise SkillDirError(f"this machine cannot run {hardware} targets (see `accel hardware`)")
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as err:
        raise SkillDirError(f"the Prefect server at {api_url} does not answer: {err}") from None
    settings = get_settings()
    if settings.results_url is None:
        err_console.print(
            f"[yellow]results go to the local file {settings.results_path}; to send them to the team's API, "
            "set ACCEL_RESULTS=http://<api host>:<port>[/]"
        )
    elif settings.api_key is None:
        err_console.print(
            "[yellow]ACCEL_API_KEY is not set: the API refuses rows without a key; on the API's machine make one "
            "with `accel keys create --scope worker --scope read --name <this host>`[/]"
        )
    pool = work_pool_name(hardware)
    ensure_pools(api_url, [pool])
    env = _service_env(api_url)
    command = worker_command_line(pool)
    _default_sigint()
    os.execve(command[0], command, env)  # the worker takes this process over: signals reach it directly
