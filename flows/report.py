"""What a pipeline run leaves in the Prefect UI: a table artifact and a markdown report."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from accel.flows.chain import ChainResult


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def rows(results: list[ChainResult]) -> list[dict[str, str]]:
    return [
        {
            "model": r.model,
            "target": r.target,
            "status": r.status,
            "stage": r.stage,
            "checks": f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
            "shape": f"b{r.batch} s{r.seq}" if r.batch else "-",
            "p50 ms": _fmt(r.p50_ms, ".2f"),
            "tokens/s": _fmt(r.tokens_per_s, ".0f"),
            "MFU": _fmt(r.mfu, ".2%"),
            "skill": r.skill_id or "-",
            "run": r.run_id,
            "message": r.message,
        }
        for r in results
    ]


def markdown(title: str, results: list[ChainResult]) -> str:
    table = rows(results)
    columns = ["model", "target", "status", "checks", "shape", "p50 ms", "tokens/s", "MFU", "message"]
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
