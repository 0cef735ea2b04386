"""`accel run`: the whole pipeline (generate -> test -> benchmark) for models x targets, with live progress.

Runs against the Prefect server of PREFECT_API_URL, else the one `accel up` started on this machine,
else a local one kept for the next run (cli/local_prefect: its state under $ACCEL_HOME/prefect, stopped
after 15 idle minutes; ACCEL_LOCAL_PREFECT=0: a temporary one per run). With `--api URL` it runs nowhere here: the
accel API at URL starts the pipeline on its workers, and this command follows the run over its WebSocket
and prints the same table from the rows the API returns.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from accel.cli import local_prefect
from accel.cli.bench import _ints
from accel.cli.output import JsonFlag, console, emit_json, err_console, fail, progress_bar
from accel.hardware import parse_targets
from accel.settings import get_settings
from accel.tasks.levels import LEVEL_NAMES, check_level

LOCAL_PREFECT = "http://127.0.0.1:4200/api"
# The pipeline reports progress as it goes; a step that says nothing for this long (a day) is taken as hung.
PIPELINE_QUIET_S = 24 * 3600.0


def prefect_api() -> str | None:
    """The Prefect API to run against, or None for an ephemeral server."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        if httpx.get(f"{LOCAL_PREFECT}/health", timeout=0.5).status_code == 200:
            return LOCAL_PREFECT
    except httpx.HTTPError:
        pass
    return None


def note(r: Any) -> str:
    """A target's flag (noisy and why, a withheld MFU), then its message when it did not pass."""
    parts = []
    if r.noisy:
        parts.append(f"NOISY: {r.noise_reason or 'flagged'}")
    elif r.noisy_points:
        parts.append(f"{r.noisy_points} other point(s) noisy")
    if r.mfu_withheld:
        parts.append(f"MFU withheld: {r.mfu_withheld}")
    if r.status != "passed":
        parts.append(r.message)
    return ". ".join(parts)


def _figure(value: float | None, spec: str, noisy: bool) -> str:
    return (format(value, spec) + (" [yellow](noisy)[/]" if noisy else "")) if value is not None else "-"


def _generated(r: Any) -> list[str]:
    """The generate headline's columns: TTFT, TPOT (ms) and generated tokens/s, each with the noisy marker."""
    marked = r.generate_noisy
    tokens = _figure(r.generate_tokens_per_s, ".0f", marked) if r.generate_tokens_per_s else "-"
    batch = f" (b{r.generate_batch})" if r.generate_batch and r.generate_tokens_per_s else ""
    return [_figure(r.ttft_ms, ".2f", marked), _figure(r.tpot_ms, ".2f", marked), tokens + batch]


def _table(result: Any) -> Table:
    table = Table(title=f"pipeline {result.run_id}", title_justify="left")
    generates = any(r.ttft_ms is not None for r in result.results)  # the three columns only where one generated
    columns = ["model", "target", "status", "checks", "shape", "p50 ms", "tokens/s", "MFU"]
    columns += ["TTFT ms", "TPOT ms", "gen tokens/s"] if generates else []
    for column in (*columns, "note"):
        table.add_column(column, overflow="fold")
    for r in result.results:
        style = "green" if r.status == "passed" else "red"
        table.add_row(
            r.model,
            r.target,
            f"[{style}]{r.status}[/]",
            f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
            f"b{r.batch} s{r.seq}" if r.batch else "-",
            _figure(r.p50_ms, ".2f", r.noisy),
            f"{r.tokens_per_s:.0f}" if r.tokens_per_s else "-",
            "withheld" if r.mfu_withheld else (f"{r.mfu:.2%}" if r.mfu is not None else "-"),
            *(_generated(r) if generates else []),
            note(r),
        )
    return table


def run_command(
    models: Annotated[list[str], typer.Argument(help="Model refs: local directories, packaged models, Hub ids.")],
    targets: Annotated[str, typer.Option("--targets", "-t", help="Comma-separated HARDWARE/RUNTIME[:PRECISION].")],
    level: Annotated[
        str, typer.Option("--level", "-l", help=f"Test level: {', '.join(LEVEL_NAMES)}.")
    ] = "comprehensive",
    batch: Annotated[str, typer.Option("--batch", help="The forward scenario's batch sizes.")] = "1,8",
    seq: Annotated[str, typer.Option("--seq", help="The forward scenario's lengths.")] = "128",
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="Per benchmark round.")] = 2.0,
    min_iters: Annotated[
        int | None, typer.Option("--min-iters", min=1, help="Timed calls per round, at least (default 10).")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, max=20, help="Rounds per point, each a process (default 3).")
    ] = None,
    generate_batch: Annotated[
        str | None, typer.Option("--generate-batch", help="The generate scenario's batch sizes (default 1,4).")
    ] = None,
    prompt_tokens: Annotated[
        int | None,
        typer.Option("--prompt-tokens", min=1, help="The generate scenario's prompt (default 256, within the model)."),
    ] = None,
    new_tokens: Annotated[
        int | None, typer.Option("--new-tokens", min=1, help="Tokens each generate call decodes (default 64).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Generate the skills again.")] = False,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            metavar="URL",
            help="Run through the accel API at URL (e.g. http://127.0.0.1:8000, what `accel up` serves) "
            "instead of in this process.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Generate, test and benchmark MODELS on every target; a table per target at the end."""
    parsed = [str(t) for t in parse_targets(targets)]  # bad input fails before Prefect starts
    check_level(level)
    bench = {"batches": _ints(batch, "--batch"), "seqs": _ints(seq, "--seq"), "min_seconds": min_seconds}
    optional = {
        "min_iters": min_iters,
        "rounds": rounds,
        "generate_batches": _ints(generate_batch, "--generate-batch"),
        "prompt_tokens": prompt_tokens,  # unset generate settings: the leaderboard's defaults
        "new_tokens": new_tokens,
    }
    bench.update({k: v for k, v in optional.items() if v is not None})
    if api is not None:
        result = run_through_api(api, models, parsed, level, bench, force, json_output)
        _report(result, json_output)
        return
    from accel.flows.results import PipelineResult
    from accel.flows.warm_engine import ENGINE_PRELOAD
    from accel.hardware import Target
    from accel.tasks.benchmark.process import point_preload
    from accel.tasks.isolated import prewarm
    from accel.tasks.isolated.call import call
    from accel.tasks.reference import REFERENCE_PRELOAD
    from accel.tasks.resolve_stage import resolve_isolated

    # The fork servers of generation, checks and points import while this process resolves.
    for preload in (REFERENCE_PRELOAD, *sorted({point_preload(Target.parse(t).runtime) for t in parsed})):
        prewarm(preload)
    for ref in models:  # a ref that names nothing is bad input, refused before any run starts
        resolve_isolated(ref, progress=lambda step, fraction: err_console.print(step))
    api = prefect_api()
    if api is None and local_prefect.enabled():
        api = local_prefect.local_prefect_api(get_settings())
        err_console.print(f"Prefect: {api} (kept for the next run; it stops after 15 idle minutes)")
    else:
        err_console.print(f"Prefect: {api or 'a temporary server, for this run only'}")
    prefect_env = {"PREFECT_API_URL": api} if api else {}  # what the pipeline's process (and its server) use
    with progress_bar(json_output, bar=False) as progress:
        task = progress.add_task("starting", total=None)
        # The pipeline runs in a process forked warm from the server that has imported Prefect and the
        # flows (flows/warm_engine), not here: this command imports neither. Ctrl-C interrupts it there.
        answer = call(
            "accel.flows.pipeline:pipeline_reporting",
            ENGINE_PRELOAD,
            timeout_s=PIPELINE_QUIET_S,
            progress=lambda line, _fraction: progress.update(task, description=line),
            extra_env=prefect_env,
            models=models,
            targets=parsed,
            level=level,
            bench=bench,
            force=force,
            trigger="cli",
        )
    _report(PipelineResult.model_validate(answer), json_output)


def _report(result: Any, json_output: bool) -> None:
    if json_output:
        emit_json(result.model_dump(mode="json"))
    else:
        console.print(_table(result))
    if result.status != "passed":
        raise typer.Exit(1)


def _describe(message: dict[str, Any], current: dict[str, str]) -> str | None:
    """The progress line of one WebSocket message (None: nothing new to show)."""
    if message.get("model") and message.get("target"):
        current["chain"] = f"{message['model']} on {message['target']}"
    if message.get("type") == "progress":
        done = f" {message['progress']:.0%}" if message.get("progress") is not None else ""
        step = " ".join(str(message[k]) for k in ("stage", "step") if message.get(k))
        return f"{current['chain']}: {step}{done}".lstrip(": ")
    if message.get("type") in ("snapshot", "state"):
        what = message.get("stage") or "run"
        return f"{what} {message.get('state_name') or message.get('status')}" + (
            f": {message['message']}" if message.get("message") else ""
        )
    if message.get("type") == "error":
        return f"error: {message.get('message')}"
    return None


def run_through_api(
    url: str,
    models: list[str],
    targets: list[str],
    level: str,
    bench: dict[str, Any],
    force: bool,
    json_output: bool,
) -> Any:
    """Start the pipeline on the accel API at `url`, follow it to its end, and return it as a PipelineResult.

    The API's 4xx (a model ref it cannot resolve, a bad shape) is bad input: exit 2 with its detail; its
    503 (Prefect away, nothing deployed) exit 1; an API that does not answer is ServiceUnavailableError.
    """
    from accel.api.client import AccelAPIError, AccelClient
    from accel.flows.results import PipelineResult
    from accel.tasks.errors import ServiceUnavailableError

    try:
        with AccelClient(url) as client:
            op = client.run_pipeline(
                models,
                targets,
                batch_sizes=bench["batches"],
                sequence_lengths=bench["seqs"],
                min_seconds=bench["min_seconds"],
                level=level,
                force=force,
                min_iters=bench.get("min_iters"),
                rounds=bench.get("rounds"),
                generate_batch_sizes=bench.get("generate_batches"),
                prompt_tokens=bench.get("prompt_tokens"),
                new_tokens=bench.get("new_tokens"),
            )
            link = f" ({op.run_url})" if op.run_url else ""
            err_console.print(f"accel API {client.base_url}: pipeline {op.operation_id}{link}: {op.message}")
            with progress_bar(json_output, bar=False) as progress:
                task = progress.add_task(op.message, total=None)
                current = {"chain": ""}
                try:
                    for message in client.stream(op.operation_id):
                        if (line := _describe(message, current)) is not None:
                            progress.update(task, description=line)
                except ServiceUnavailableError as err:  # the socket went away: follow the run by polling
                    progress.update(task, description=f"following by polling ({err})")
                except KeyboardInterrupt:  # this command stops following; the run is the API's
                    where = f"{client.base_url}/api/workflows/{op.operation_id}"
                    err_console.print(f"pipeline {op.operation_id} goes on: GET {where}; cancel: POST {where}/cancel")
                    raise
                final = client.wait(op.operation_id, poll_s=2.0)  # at once when the socket saw the end
    except AccelAPIError as err:
        fail(err.detail, code=2 if err.is_request_error else 1)
    rows = final.results
    if not rows:
        fail(f"pipeline {final.run_id} ended {final.state_name or final.status} with no result: {final.message}", 1)
    passed = final.status == "completed" and all(r.status == "passed" for r in rows)
    return PipelineResult(run_id=final.run_id, status="passed" if passed else "failed", results=rows)
