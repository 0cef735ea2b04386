"""How the CLI talks: rich tables for people, one JSON document for scripts, one line for errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Piped into a file or a CI log there is no terminal width: tables get room for model ids instead of
# rich's 80 columns (COLUMNS still decides when set).
LOG_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=LOG_WIDTH)
err_console = Console(stderr=True, width=LOG_WIDTH)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def emit_json(payload: Any) -> None:
    """Write `payload` (pydantic models allowed, nested) as one JSON document on stdout."""

    def default(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return str(value)

    sys.stdout.write(json.dumps(payload, default=default, indent=2) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> NoReturn:
    """One readable line on stderr, then exit (2: bad input)."""
    sys.stderr.write(f"accel: error: {' '.join(str(message).split())}\n")
    raise SystemExit(code)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def progress_bar(json_output: bool, bar: bool = True) -> Progress:
    """A transient progress display on stderr; off for --json and when stderr is not a terminal (logs, pipes)."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), *([BarColumn()] if bar else []), TimeElapsedColumn()]
    return Progress(*columns, console=err_console, transient=True, disable=json_output or not err_console.is_terminal)
