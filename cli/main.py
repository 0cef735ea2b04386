"""The `accel` command."""

from __future__ import annotations

import os
import sys
import warnings

import typer
from pydantic import ValidationError

from accel import __version__
from accel.cli.bench import bench_command, compare_command
from accel.cli.generate import generate_command, templates_command
from accel.cli.hardware import hardware, targets
from accel.cli.keys import keys_app
from accel.cli.models import models_app
from accel.cli.output import fail
from accel.cli.results import results_app
from accel.cli.run import run_command
from accel.cli.serve import serve_command
from accel.cli.services import up_command, worker_command
from accel.cli.test import test_command
from accel.settings import describe_invalid
from accel.storage import ResultsRefusedError, ResultsUnavailableError, StoreBusyError
from accel.tasks.errors import REQUEST_ERRORS, GenerationError, ServiceUnavailableError

# The request was wrong, not the program: exit code 2 and one line (the API answers 4xx for the same list).
BAD_INPUT = REQUEST_ERRORS
# The work ran and failed, or a service it needs is away: exit code 1 and one line.
WORK_FAILED: tuple[type[Exception], ...] = (
    GenerationError,
    StoreBusyError,
    ServiceUnavailableError,
    ResultsRefusedError,
    ResultsUnavailableError,
)

app = typer.Typer(
    name="accel",
    help="Generate, test and benchmark Hugging Face models on every hardware target.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("hardware")(hardware)
app.command("targets")(targets)
app.command("templates")(templates_command)
app.command("generate")(generate_command)
app.command("test")(test_command)
app.command("bench")(bench_command)
app.command("compare")(compare_command)
app.command("run")(run_command)
app.command("up")(up_command)
app.command("serve")(serve_command)
app.command("worker")(worker_command)
app.add_typer(models_app, name="models")
app.add_typer(results_app, name="results")
app.add_typer(keys_app, name="keys")


@app.command("version")
def version() -> None:
    """Print accel's version."""
    print(__version__)


def _quiet_libraries() -> None:
    # Deprecation and advisory warnings from libraries are noise on a CLI's stderr.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, mapping bad input to exit code 2 and one line on stderr."""
    _quiet_libraries()
    # Commands run from a shell fork their isolated processes from servers shared across commands
    # (tasks/isolated): the second `accel run` does not import torch and transformers again.
    os.environ.setdefault("ACCEL_SHARED_FORK_SERVERS", "1")
    try:
        code = app(args=argv, prog_name="accel", standalone_mode=False)
    except BAD_INPUT as err:
        fail(str(err))
    except ValidationError as err:
        if err.title != "Settings":
            raise
        fail(describe_invalid(err))  # a bad ACCEL_* value: one line, not a traceback
    except WORK_FAILED as err:
        fail(str(err), code=1)
    except typer.Abort:
        sys.stderr.write("accel: aborted\n")
        raise SystemExit(130) from None
    except typer.TyperException as err:  # usage errors: unknown option, missing argument, bad value
        if not err.format_message():  # `accel` alone: help was printed, nothing more to say
            raise SystemExit(getattr(err, "exit_code", 2)) from None
        ctx = getattr(err, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        fail(err.format_message() + hint, code=getattr(err, "exit_code", 2))
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
