"""Routes of results: the aggregates of the results store (summary, compare, history, regressions, ...).

The SQL lives in storage/queries; these routes validate what the caller named (a target's spelling,
a known metric), run one query and shape its rows. Handlers are plain functions: FastAPI runs them in
its thread pool, so a DuckDB query never blocks the event loop.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from accel.api.cache import cached
from accel.api.deps import StoreDep
from accel.api.schemas.results import (
    Candidate,
    CompareResponse,
    ExportFormat,
    HistoryResponse,
    Metric,
    Recommendation,
    RegressionPoint,
    RegressionsResponse,
    SummaryPage,
    Verdict,
)
from accel.hardware.targets import Hardware, Runtime, Target
from accel.storage import DEFAULT_THRESHOLD
from accel.storage import queries as q
from accel.tasks.errors import RequestError, RunNotFoundError

router = APIRouter(prefix="/api/results", tags=["results"])

_CHUNK = 1 << 16
INT32_MAX = 2**31 - 1  # batch and seq are INTEGER columns
MAX_OFFSET = 10**12
EXPORT_MAX_ROWS = 1_000_000  # one export's page: a file on the API's disk before it streams (OWASP API4)

ModelQuery = Annotated[str, Query(min_length=1, max_length=512, description="Model ref, as recorded.")]
Dimension = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
Limit = Annotated[int, Query(ge=1, le=q.MAX_LIMIT, description="Rows per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
assert set(get_args(Metric)) == set(q.METRICS) and set(get_args(ExportFormat)) == set(q.FORMATS)


class ResultsNotFoundError(RequestError):
    """The store holds nothing that answers the question (no such model, target, shape...)."""

    status_code = 404


def _target(text: str) -> str:
    """The canonical spelling the store records (`cpu/torch:fp32` is stored as `cpu/torch`); 422 if malformed."""
    return str(Target.parse(text))


def result_filter(
    model: Annotated[str | None, Query(min_length=1, max_length=512, description="Model ref, as recorded.")] = None,
    target: Annotated[str | None, Query(description="HARDWARE/RUNTIME[:PRECISION], e.g. cpu/torch.")] = None,
    hardware: Hardware | None = None,
    runtime: Runtime | None = None,
    since: Annotated[datetime | None, Query(description="Only rows recorded at or after this instant.")] = None,
    days: Annotated[int | None, Query(ge=1, le=36500, description="Only rows of the last N days.")] = None,
) -> q.ResultFilter:
    starts = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since,) if t is not None]
    if days is not None:
        starts.append(datetime.now(UTC) - timedelta(days=days))
    return q.ResultFilter(
        model=model,
        target=_target(target) if target is not None else None,
        hardware=hardware,
        runtime=runtime,
        since=max(starts) if starts else None,
    )


FilterDep = Annotated[q.ResultFilter, Depends(result_filter)]


@router.get("/summary", response_model=SummaryPage)
@cached
def summary(store: StoreDep, where: FilterDep, limit: Limit = q.DEFAULT_LIMIT, offset: Offset = 0) -> SummaryPage:
    """One row per model x target: the latest headline figure (with its noisy flag), checks, last run."""
    rows, total = q.summary(store, where, limit, offset)
    return SummaryPage.model_validate({"total": total, "limit": limit, "offset": offset, "rows": rows})


@router.get("/compare", response_model=CompareResponse)
@cached
def compare(store: StoreDep, model: ModelQuery, baseline: str = "cpu/torch") -> CompareResponse:
    """Speedup of every target of `model` over `baseline`, per scenario and shape (latest ok measurements)."""
    baseline = _target(baseline)
    points = q.speedups(store, model, baseline)
    if not points:
        measured = q.measured_targets(store, model)
        if not measured:
            raise ResultsNotFoundError(f"no ok measurement of model {model!r} in the results store")
        if baseline not in measured:
            raise ResultsNotFoundError(
                f"model {model!r} has no ok measurement on the baseline {baseline}; measured on: {', '.join(measured)}"
            )
        others = [t for t in measured if t != baseline]
        if not others:
            raise ResultsNotFoundError(f"model {model!r} is measured only on the baseline {baseline}")
    return CompareResponse.model_validate({"model": model, "baseline": baseline, "points": points})


@router.get("/history", response_model=HistoryResponse)
@cached
def history(
    store: StoreDep,
    model: ModelQuery,
    target: Annotated[str, Query(description="HARDWARE/RUNTIME[:PRECISION], e.g. cpu/torch.")],
    metric: Metric = "p50_ms",
    days: Annotated[int, Query(ge=1, le=36500)] = 30,
    scenario: Annotated[str | None, Query(max_length=64)] = None,
    batch: Dimension = None,
    seq: Dimension = None,
    limit: Limit = q.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> HistoryResponse:
    """`metric` over runs in time order; each point judged against the previous non-noisy one of its shape."""
    target = _target(target)
    since = datetime.now(UTC) - timedelta(days=days)
    points, total = q.history(
        store, model, target, metric, since, scenario=scenario, batch=batch, seq=seq, limit=limit, offset=offset
    )
    if not total and not q.ever_measured(store, model, target):
        raise ResultsNotFoundError(f"no measurement of model {model!r} on {target} in the results store")
    return HistoryResponse.model_validate(
        {
            "model": model,
            "target": target,
            "metric": metric,
            "higher_is_better": q.METRICS[metric][1],
            "threshold": DEFAULT_THRESHOLD,
            "since": since,
            "total": total,
            "limit": limit,
            "offset": offset,
            "points": [{**p, "regressed": p["verdict"] == "regressed"} for p in points],
        }
    )


@router.get("/regressions", response_model=RegressionsResponse)
def regressions(
    store: StoreDep,
    run: Annotated[str, Query(min_length=1, max_length=256, description="The run to judge.")],
    baseline: Annotated[
        str | None, Query(min_length=1, max_length=256, description="Default: the previous run of the same kind.")
    ] = None,
) -> RegressionsResponse:
    """The verdicts `accel compare` gives: every point of either run (and the runs they started)."""
    given = baseline is not None
    if baseline is None:
        baseline = q.previous_run(store, run)
        if baseline is None:
            if store.get_run(run) is None:
                raise RunNotFoundError(f"no run {run!r} in the results store")
            raise ResultsNotFoundError(
                f"no earlier run of the same kind as {run!r} measured any of its skills; name one with baseline="
            )
    try:
        compared = q.regressions(store, run, baseline)
    except KeyError as err:
        # compare_runs names the store it read ("... in ResultsStore('/path')"): no local path leaks
        message = str(err.args[0] if err.args else err)
        detail = message.rpartition(" in ")[0] or message
        raise RunNotFoundError(detail) from err
    points = [RegressionPoint(**p.model_dump(exclude={"change"}), **p.change.model_dump()) for p in compared]
    counts: dict[Verdict, int] = dict.fromkeys(get_args(Verdict), 0)
    for point in points:
        counts[point.verdict] += 1
    return RegressionsResponse(
        run=run, baseline=baseline, baseline_given=given, threshold=DEFAULT_THRESHOLD, counts=counts, points=points
    )


@router.get("/recommend", response_model=Recommendation)
@cached
def recommend(
    store: StoreDep,
    model: ModelQuery,
    batch: Annotated[int, Query(ge=1, le=INT32_MAX)],
    seq: Annotated[int, Query(ge=1, le=INT32_MAX, description="Tokens, image side or audio samples.")],
    scenario: Annotated[str, Query(min_length=1, max_length=64)] = "forward",
) -> Recommendation:
    """The fastest target at that shape whose latest checks all passed; noisy figures never rank."""
    rows = [Candidate.model_validate(r) for r in q.candidates(store, model, batch, seq, scenario)]
    point = f"{scenario} batch={batch} seq={seq}"
    if not rows:
        shapes = q.measured_shapes(store, model)
        if not shapes:
            raise ResultsNotFoundError(f"no ok measurement of model {model!r} in the results store")
        measured = "; ".join(f"{s['scenario']} batch={s['batch']} seq={s['seq']}" for s in shapes)
        raise ResultsNotFoundError(f"model {model!r} was never measured at {point}; measured at: {measured}")
    ranked = [c for c in rows if c.rank is not None]
    excluded = [c for c in rows if c.rank is None]
    if not ranked:
        why = "; ".join(f"{c.target}: {c.excluded_reason}" for c in excluded)
        raise ResultsNotFoundError(f"no target of model {model!r} qualifies at {point}: {why}")
    best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    margin = runner_up.p50_ms / best.p50_ms if runner_up and runner_up.p50_ms and best.p50_ms else None
    return Recommendation(
        model=model,
        scenario=scenario,
        batch=batch,
        seq=seq,
        best=best,
        runner_up=runner_up,
        margin=margin,
        ranked=ranked,
        excluded=excluded,
    )


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The measurements, one row each, with their skill's model ref and target.",
            "content": {media: {} for _, media, _ in q.FORMATS.values()},
        }
    },
)
def export(
    store: StoreDep,
    where: FilterDep,
    format: Annotated[ExportFormat, Query(description="csv, parquet or json (one array).")] = "csv",
    limit: Annotated[
        int, Query(ge=1, le=EXPORT_MAX_ROWS, description="At most this many rows (the next ones: X-Next-Offset).")
    ] = EXPORT_MAX_ROWS,
    offset: Offset = 0,
) -> StreamingResponse:
    """Row-level measurements written by DuckDB's own writer to a temporary file, then streamed; a page of at
    most EXPORT_MAX_ROWS rows, the header `X-Next-Offset` saying where the next one starts."""
    folder = Path(tempfile.mkdtemp(prefix="accel-export-"))
    _, media, suffix = q.FORMATS[format]
    path = folder / f"measurements.{suffix}"
    try:
        count = q.export_measurements(store, where, format, path, limit, offset)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StreamingResponse(
        _chunks(path),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="measurements.{suffix}"',
            "X-Row-Count": str(count),
            **({"X-Next-Offset": str(offset + count)} if count == limit else {}),
        },
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
