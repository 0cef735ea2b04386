"""`accel bench` and `accel compare`: measure skills, and judge one run against another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from accel.cli.output import JsonFlag, console, emit_json, human_bytes, progress_bar
from accel.cli.skills import skill_dir_or_generate
from accel.storage import DEFAULT_THRESHOLD, MeasurementRecord, compare_runs
from accel.tasks.errors import SkillDirError
from accel.tasks.results_store import open_results_file

if TYPE_CHECKING:
    from accel.tasks.benchmark import BenchReport

_VERDICT_STYLE = {"improved": "green", "regressed": "bold red", "unchanged": "dim", "inconclusive": "yellow"}
MAX_ROUNDS = 20  # as tasks.benchmark.config.MAX_ROUNDS (not imported here: it would import the stage)


def note(m: MeasurementRecord) -> str:
    """What a reader must know beside a row's figures: its flag and reason first."""
    parts = []
    if m.noisy:
        parts.append("NOISY: " + (m.noise_reason or "; ".join(m.details.get("noise", [])) or "flagged"))
    if m.details.get("mfu_withheld"):
        parts.append(f"MFU withheld: {m.details['mfu_withheld']}")
    if m.scenario == "generate":
        parts.append(f"{m.new_tokens or m.details.get('new_tokens')} new tokens")
        if m.memory_bandwidth_gbs is not None:
            parts.append(f"memory bandwidth {m.memory_bandwidth_gbs:.1f} GB/s")
        if m.details.get("bandwidth_withheld"):
            parts.append(f"bandwidth utilisation withheld: {m.details['bandwidth_withheld']}")
        if m.details.get("new_tokens_note"):
            parts.append(m.details["new_tokens_note"])
    return ". ".join(parts)


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else ""


def utilisation(m: MeasurementRecord) -> str:
    """MFU for a forward row; for a generate row the decode's memory-bandwidth utilisation (its bound)."""
    if m.scenario == "generate":
        if m.bandwidth_utilization is not None:
            return f"BW {m.bandwidth_utilization:.2%}"
        return "withheld" if m.details.get("bandwidth_withheld") else ""
    return f"{m.mfu:.2%}" if m.mfu is not None else ("withheld" if m.details.get("mfu_withheld") else "")


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SkillDirError(f"{what} must be comma-separated whole numbers, e.g. 1,8,32; got {text!r}") from None
    if not values or min(values) < 1:
        raise SkillDirError(f"{what} must be whole numbers of at least 1; got {text!r}")
    return values


def _table(report: BenchReport) -> Table:
    table = Table(title=f"{report.target} · skill {report.skill_id} · run {report.run_id}", title_justify="left")
    generates = any(m.scenario == "generate" for m in report.measurements)  # TTFT, TPOT only where one generated
    columns = ["scenario", "batch", "seq", "status", "p50 ms", "p90 ms", *(["TTFT ms", "TPOT ms"] if generates else [])]
    columns += ["rounds", "others' CPU", "samples/s", "tokens/s", "MFU / BW" if generates else "MFU", "peak RSS"]
    for column in (*columns, "note"):
        table.add_column(column, overflow="fold")
    for m in report.measurements:
        if m.status != "ok":
            table.add_row(
                m.scenario, str(m.batch), str(m.seq), f"[red]{m.status}[/]", *[""] * (len(columns) - 4), m.error or ""
            )
            continue
        flag = "[yellow]noisy[/]" if m.noisy else "ok"
        rounds = " / ".join(f"{v:.3f}" for v in m.round_p50_ms)
        table.add_row(
            m.scenario,
            str(m.batch),
            str(m.seq),
            flag,
            f"{m.p50_ms:.3f}",
            f"{m.p90_ms:.3f}",
            *([_ms(m.prefill_ms), _ms(m.decode_ms_per_token)] if generates else []),
            rounds,
            f"{m.foreign_cpu_share:.0%}" if m.foreign_cpu_share is not None else "?",
            f"{m.samples_per_s:.1f}" if m.samples_per_s else "",
            f"{m.tokens_per_s:.0f}" if m.tokens_per_s else "",
            utilisation(m),
            human_bytes(m.peak_rss_bytes),
            note(m),
        )
    return table


def bench_command(
    skill: Annotated[str, typer.Argument(help="A skill directory, or a model ref (then --target is needed).")],
    target: Annotated[str | None, typer.Option("--target", "-t", help="With a model ref: its target.")] = None,
    batch: Annotated[str, typer.Option("--batch", help="The forward scenario's batch sizes, comma-separated.")] = "1",
    seq: Annotated[
        str | None,
        typer.Option("--seq", help="The forward scenario's lengths (tokens; frames for speech), comma-separated."),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="forward, generate (default: both where it generates).")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls first.")] = 3,
    min_iters: Annotated[int, typer.Option("--min-iters", min=1, help="At least this many timed calls.")] = 10,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="... and at least this long.")] = 2.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.01, help="At most this long.")] = 60.0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Intra-op threads.")] = None,
    generate_batch: Annotated[
        str, typer.Option("--generate-batch", help="The generate scenario's batch sizes (LLM-Perf: 1; and 4).")
    ] = "1,4",
    prompt_tokens: Annotated[
        int | None,
        typer.Option("--prompt-tokens", min=1, help="The generate scenario's prompt (default 256, within the model)."),
    ] = None,
    new_tokens: Annotated[
        int, typer.Option("--new-tokens", min=1, help="Tokens each generate call decodes (LLM-Perf: 64).")
    ] = 64,
    rounds: Annotated[
        int, typer.Option("--rounds", help=f"Rounds per point, each a fresh process, interleaved (1-{MAX_ROUNDS}).")
    ] = 3,
    json_output: JsonFlag = False,
) -> None:
    """Benchmark a skill over a batch x sequence matrix; every point measured in R rounds, each a fresh process."""
    if not 1 <= rounds <= MAX_ROUNDS:
        raise SkillDirError(f"--rounds must be between 1 and {MAX_ROUNDS}; got {rounds}")
    from accel.tasks.benchmark import BenchConfig, benchmark  # here: the stage imports prefect

    config = BenchConfig(
        batches=_ints(batch, "--batch"),
        seqs=_ints(seq, "--seq") or [None],
        scenarios=[s.strip() for s in scenario.split(",")] if scenario else None,
        warmup=warmup,
        min_iters=min_iters,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        threads=threads,
        rounds=rounds,
        generate_batches=_ints(generate_batch, "--generate-batch"),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
    )
    with progress_bar(json_output) as progress:
        task = progress.add_task("benchmark", total=1.0)

        def update(step: str, done: float) -> None:
            progress.update(task, description=step, completed=done)

        path = skill_dir_or_generate(skill, target, "bench", update)
        report = benchmark(path, config, progress=update)
    if json_output:
        emit_json(report.model_dump(mode="json"))
    else:
        console.print(_table(report))
    if any(m.status != "ok" for m in report.measurements):
        raise typer.Exit(1)


def compare_command(
    old_run: Annotated[str, typer.Argument(help="The baseline run id.")],
    new_run: Annotated[str, typer.Argument(help="The run to judge.")],
    threshold: Annotated[
        float, typer.Option("--threshold", min=0, help="Smallest change of the median that counts.")
    ] = DEFAULT_THRESHOLD,
    json_output: JsonFlag = False,
) -> None:
    """Compare two runs point by point from their rounds' medians; exit 1 when anything regressed.

    Regressed needs the change past --threshold, every round of one run beyond every round of the other,
    and the change larger than the spread of either run's rounds; a noisy side is inconclusive.
    """
    # The verdicts are SQL over the DuckDB file: with ACCEL_RESULTS an http URL this says so (exit 2).
    store = open_results_file(what="accel compare")
    try:
        rows = compare_runs(store, old_run, new_run, threshold=threshold)
    except KeyError as err:
        raise SkillDirError(str(err.args[0])) from None
    if json_output:
        emit_json([r.model_dump() for r in rows])
    else:
        table = Table(title=f"{old_run} -> {new_run}", title_justify="left")
        for column in ("model", "target", "scenario", "batch", "seq", "p50 ms", "verdict", "why"):
            table.add_column(column, overflow="fold")
        for r in rows:
            p50 = " -> ".join("-" if v is None else f"{v:.3f}" for v in (r.old_p50_ms, r.new_p50_ms))
            verdict = f"[{_VERDICT_STYLE[r.change.verdict]}]{r.change.verdict}[/]" + (" (noisy)" if r.noisy else "")
            table.add_row(r.model_ref, r.target, r.scenario, str(r.batch), str(r.seq), p50, verdict, r.change.reason)
        console.print(table)
    if any(r.change.verdict == "regressed" for r in rows):
        raise typer.Exit(1)
