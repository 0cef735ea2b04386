"""One metric of a model x target over its runs, in time order, with each point's verdict.

A point is compared with the previous non-noisy point of the same scenario and shape, with the
store's threshold and direction convention (`stats.DEFAULT_THRESHOLD`, ratio = new / old, a change
under the threshold is `unchanged`): `regressed` when worse by the threshold or more, `improved` when
better by it. A noisy point is never `regressed` or `improved`: it is `inconclusive`, and it never
serves as another point's reference. The first point of a series is `first`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accel.storage.queries.filters import page
from accel.storage.stats import DEFAULT_THRESHOLD
from accel.storage.store import ResultsStore

# metric -> (column, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "p50_ms": ("p50_ms", False),
    "tokens_per_s": ("tokens_per_s", True),
    "samples_per_s": ("samples_per_s", True),
    "mfu": ("mfu", True),
    "peak_rss_bytes": ("peak_rss_bytes", False),
    # the generate scenario's: time to first token, time per output token, the decode's bandwidth utilisation
    "prefill_ms": ("prefill_ms", False),
    "decode_ms_per_token": ("decode_ms_per_token", False),
    "bandwidth_utilization": ("bandwidth_utilization", True),
}

_HISTORY = """
WITH points AS (
    SELECT m.run_id, m.skill_id, m.recorded_at, m.scenario, m.batch, m.seq, m.{column}::DOUBLE AS value,
           coalesce(m.noisy, FALSE) AS noisy, m.noise_reason
    FROM measurements m JOIN skills s USING (skill_id)
    WHERE s.model_ref = ? AND s.target = ? AND m.status = 'ok' AND m.{column} IS NOT NULL
      AND m.recorded_at >= ? {shape}
),
numbered AS (  -- nn: how many non-noisy points of its series up to this one, itself included
    SELECT *, count(*) FILTER (WHERE NOT noisy) OVER (
               PARTITION BY scenario, batch, seq ORDER BY recorded_at, run_id ROWS UNBOUNDED PRECEDING) AS nn
    FROM points
),
compared AS (  -- the reference: the non-noisy point numbered nn - 1 (nn for a noisy point, which is not counted)
    SELECT n.*, q.value AS previous, q.run_id AS previous_run_id
    FROM numbered n
    LEFT JOIN numbered q ON NOT q.noisy AND q.scenario = n.scenario AND q.batch = n.batch AND q.seq = n.seq
                        AND q.nn = CASE WHEN n.noisy THEN n.nn ELSE n.nn - 1 END
)
SELECT run_id, skill_id, recorded_at, scenario, batch, seq, value, noisy, noise_reason, previous, previous_run_id,
       CASE WHEN previous > 0 THEN value / previous END AS ratio,
       CASE
           WHEN noisy THEN 'inconclusive'
           WHEN previous_run_id IS NULL THEN 'first'
           WHEN previous <= 0 THEN 'inconclusive'
           WHEN abs(value / previous - 1) < ? THEN 'unchanged'
           WHEN (value > previous) = ? THEN 'improved'
           ELSE 'regressed'
       END AS verdict,
       count(*) OVER () AS total
FROM compared
ORDER BY recorded_at, run_id, scenario, batch, seq
{page}
"""

_EVER_MEASURED = """
SELECT count(*) AS n FROM measurements m JOIN skills s USING (skill_id) WHERE s.model_ref = ? AND s.target = ?
"""


def history(
    store: ResultsStore,
    model: str,
    target: str,
    metric: str,
    since: datetime,
    *,
    scenario: str | None = None,
    batch: int | None = None,
    seq: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    limit: int | None = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The points of one page (time order) and how many there are; `metric` must be one of METRICS."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: {', '.join(METRICS)}")
    column, higher_is_better = METRICS[metric]
    shape_filters = (("m.scenario = ?", scenario), ("m.batch = ?", batch), ("m.seq = ?", seq))
    asked = [(clause, value) for clause, value in shape_filters if value is not None]
    shape = "".join(f" AND {clause}" for clause, _ in asked)
    paging, page_params = page(limit, offset)
    sql = _HISTORY.format(column=column, shape=shape, page=paging)
    params = [model, target, since, *(value for _, value in asked), threshold, higher_is_better, *page_params]
    rows = store.query(sql, params)
    if rows:
        total = rows[0]["total"]
    elif offset:  # a page past the end carries no row to count with: count with the first page
        total = history(store, model, target, metric, since, scenario=scenario, batch=batch, seq=seq, limit=1)[1]
    else:
        total = 0
    for row in rows:
        del row["total"]
    return rows, total


def ever_measured(store: ResultsStore, model: str, target: str) -> bool:
    """Whether the model x target has any measurement at all (to tell 'nothing in the window' from 'nothing')."""
    return store.query(_EVER_MEASURED, [model, target])[0]["n"] > 0
