"""What a pipeline run leaves in the Prefect UI: a table artifact and a markdown report."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from accel.flows.results import ChainResult


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def flag(r: ChainResult) -> str:
    """The flag a figure carries wherever it is printed: noisy (with why), a withheld MFU."""
    parts = []
    if r.noisy:
        parts.append(f"NOISY: {r.noise_reason or 'flagged'}")
    if r.noisy_points and not r.noisy:
        parts.append(f"{r.noisy_points} other point(s) noisy")
    if r.mfu_withheld:
        parts.append(f"MFU withheld: {r.mfu_withheld}")
    return ". ".join(parts)


def note(r: ChainResult) -> str:
    """The flag, then the message of a target that did not pass."""
    return ". ".join(p for p in (flag(r), "" if r.status == "passed" else r.message) if p)


def _generated(r: ChainResult, value: float | None, spec: str) -> str:
    """A generate headline figure (TTFT, TPOT, generated tokens/s) with its noisy marker."""
    return _fmt(value, spec) + (" (noisy)" if r.generate_noisy and value is not None else "")


GENERATE_COLUMNS = ["TTFT ms", "TPOT ms", "gen tokens/s"]


def rows(results: list[ChainResult]) -> list[dict[str, str]]:
    return [
        {
            "model": r.model,
            "target": r.target,
            "status": r.status,
            "stage": r.stage,
            "checks": f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
            "shape": f"b{r.batch} s{r.seq}" if r.batch else "-",
            "p50 ms": _fmt(r.p50_ms, ".2f") + (" (noisy)" if r.noisy else ""),
            "tokens/s": _fmt(r.tokens_per_s, ".0f"),
            "MFU": "withheld" if r.mfu_withheld else _fmt(r.mfu, ".2%"),
            "TTFT ms": _generated(r, r.ttft_ms, ".2f"),
            "TPOT ms": _generated(r, r.tpot_ms, ".2f"),
            "gen tokens/s": _generated(r, r.generate_tokens_per_s, ".0f")
            + (f" (b{r.generate_batch})" if r.generate_batch and r.generate_tokens_per_s else ""),
            "flag": flag(r) or "-",
            "skill": r.skill_id or "-",
            "run": r.run_id,
            "message": r.message,
        }
        for r in results
    ]


def markdown(title: str, results: list[ChainResult]) -> str:
    table = rows(results)
    columns = ["model", "target", "status", "checks", "shape", "p50 ms", "tokens/s", "MFU"]
    columns += GENERATE_COLUMNS if any(r.ttft_ms is not None for r in results) else []  # where one generated
    columns += ["flag", "message"]
    lines = [
        f"# {title}",
        "",
        f"{sum(r.status == 'passed' for r in results)} of {len(results)} targets passed.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"


def publish(title: str, results: list[ChainResult], key: str = "accel-pipeline") -> None:
    create_table_artifact(table=rows(results), key=key, description=title)
    create_markdown_artifact(markdown=markdown(title, results), key=f"{key}-report", description=title)
