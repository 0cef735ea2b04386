"""`accel results flush`: send the result records waiting in this machine's outbox to the accel API.

Records wait there when `ACCEL_RESULTS` is the API's URL and a send did not arrive (the API was down,
timed out, answered 5xx); every later write replays them anyway, this sends them now and says what is
left and why. Exit 0 when nothing waits any more, 1 when records still wait or the API refused some.
"""

from __future__ import annotations

import typer

from accel.cli.output import JsonFlag, console, emit_json, fail
from accel.settings import get_settings
from accel.storage import FlushReport, HttpResultsStore, Outbox, ResultsRefusedError
from accel.tasks.errors import RequestError
from accel.tasks.results_store import open_results_store, outbox_path

results_app = typer.Typer(help="The results store: records waiting to be sent to the accel API.", no_args_is_help=True)


def _print(report: FlushReport) -> None:
    console.print(f"sent     {report.sent_records} record(s) in {report.sent_batches} batch(es) to {report.url}")
    waiting = f"{report.waiting_records} record(s) in {report.waiting_batches} batch(es)"
    console.print(f"waiting  {waiting} ({report.outbox})")
    if report.rejected_batches:
        console.print(f"[red]refused  {report.rejected_batches} batch(es), set aside in {report.rejected_file}[/]")
    elif report.rejected_total:
        console.print(f"[yellow]earlier refused batches wait for a person in {report.rejected_file}[/]")
    if report.reason:
        console.print(f"why      {report.reason}")


@results_app.command("flush")
def flush_command(json_output: JsonFlag = False) -> None:
    """Send the records waiting in the outbox to the accel API (ACCEL_RESULTS); say what is left and why."""
    settings = get_settings()
    if settings.results_url is None:
        batches, records = Outbox(outbox_path(settings)).waiting()
        if batches:
            raise RequestError(
                f"{records} result record(s) wait in {outbox_path(settings)} but ACCEL_RESULTS is not an http URL: "
                "set ACCEL_RESULTS=http://<api host>:<port> and run `accel results flush` again"
            )
        report = FlushReport(url=str(settings.results_path), outbox=str(outbox_path(settings)))
        report.reason = "ACCEL_RESULTS is not an http URL: results are written to the DuckDB file directly"
    else:
        store = open_results_store(settings)
        assert isinstance(store, HttpResultsStore)
        try:
            with store:
                report = store.flush()
        except ResultsRefusedError as err:
            fail(str(err), code=1)
    if json_output:
        emit_json(report.model_dump(mode="json"))
    elif settings.results_url is None:
        console.print(f"nothing waits: {report.reason} ({report.url})")
    else:
        _print(report)
    if report.waiting_batches or report.rejected_batches:
        raise typer.Exit(1)
