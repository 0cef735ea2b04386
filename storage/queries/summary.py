"""One row per model x target: the headline figure of its latest benchmark, its latest test, its last run.

The headline point is the model x target's latest ok `forward` measurement (its batch and seq are
given with it). A figure always comes with its noisy flag and reason.

Two passes keep the query cheap on a large store: the first reads only skill, time, status and
scenario to find each skill's latest times; the second fetches just the rows at those times (DuckDB
pushes the join's time range into the scan, so it reads only the row groups that hold them), and only
for the page asked for. The first pass reads the last `RECENT` first (rows arrive in time order, so
DuckDB's zone maps skip the older row groups) and goes further back only for the skills whose latest
ok forward point is older: the same answer, without reading the whole table when every skill is
measured often.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from accel.storage.queries.filters import ResultFilter, page
from accel.storage.store import ResultsStore

RECENT = timedelta(days=7)

_SUMMARY = """
WITH picked AS (
    SELECT s.skill_id, s.model_ref, s.target, s.hardware, s.runtime, s.precision FROM skills s WHERE {skills}
),
recent AS (
    SELECT m.skill_id, max(m.recorded_at) AS last_at,
           max(m.recorded_at) FILTER (WHERE m.status = 'ok' AND m.scenario = 'forward') AS ok_at
    FROM measurements m
    WHERE {picked_m} AND m.recorded_at >= ?
    GROUP BY m.skill_id
),
older AS (
    SELECT m.skill_id, max(m.recorded_at) AS last_at,
           max(m.recorded_at) FILTER (WHERE m.status = 'ok' AND m.scenario = 'forward') AS ok_at
    FROM measurements m
    WHERE m.recorded_at < ? AND {since_m}
      AND m.skill_id IN (
          SELECT skill_id FROM picked
          WHERE skill_id NOT IN (SELECT skill_id FROM recent WHERE ok_at IS NOT NULL)
      )
    GROUP BY m.skill_id
),
measured AS (
    SELECT skill_id, max(last_at) AS last_at, max(ok_at) AS ok_at
    FROM (SELECT * FROM recent UNION ALL SELECT * FROM older)
    GROUP BY skill_id
),
tested AS (
    SELECT c.skill_id, max(c.recorded_at) AS test_at
    FROM checks c
    WHERE {picked_c} AND {since_c}
    GROUP BY c.skill_id
),
per_target AS (
    SELECT p.model_ref, p.target, any_value(p.hardware) AS hardware, any_value(p.runtime) AS runtime,
           any_value(p.precision) AS precision, max(m.ok_at) AS ok_at, max(t.test_at) AS test_at,
           greatest(max(m.last_at), max(t.test_at)) AS last_at
    FROM picked p LEFT JOIN measured m USING (skill_id) LEFT JOIN tested t USING (skill_id)
    GROUP BY p.model_ref, p.target
    HAVING greatest(max(m.last_at), max(t.test_at)) IS NOT NULL
),
paged AS (
    SELECT *, count(*) OVER () AS total FROM per_target ORDER BY model_ref, target {page}
),
headline AS (
    SELECT g.model_ref, g.target, m.run_id, m.batch, m.seq, m.p50_ms, m.tokens_per_s, m.samples_per_s, m.mfu,
           coalesce(m.noisy, FALSE) AS noisy, m.noise_reason, m.recorded_at
    FROM paged g
    JOIN picked p USING (model_ref, target)
    JOIN measurements m ON m.skill_id = p.skill_id AND m.recorded_at = g.ok_at
    WHERE m.status = 'ok' AND m.scenario = 'forward'
    QUALIFY row_number() OVER (PARTITION BY g.model_ref, g.target ORDER BY m.batch, m.seq, m.run_id) = 1
),
test_run AS (
    SELECT g.model_ref, g.target, min(c.run_id) AS run_id
    FROM paged g
    JOIN picked p USING (model_ref, target)
    JOIN checks c ON c.skill_id = p.skill_id AND c.recorded_at = g.test_at
    GROUP BY g.model_ref, g.target
),
test_counts AS (
    SELECT t.model_ref, t.target, t.run_id,
           count(*) FILTER (WHERE c.status = 'passed') AS checks_passed, count(*) AS checks_total
    FROM test_run t
    JOIN picked p USING (model_ref, target)
    JOIN checks c ON c.skill_id = p.skill_id AND c.run_id = t.run_id
    GROUP BY t.model_ref, t.target, t.run_id
),
last_run AS (
    SELECT model_ref, target, min(run_id) AS run_id
    FROM (
        SELECT g.model_ref, g.target, m.run_id
        FROM paged g JOIN picked p USING (model_ref, target)
        JOIN measurements m ON m.skill_id = p.skill_id AND m.recorded_at = g.last_at
        UNION ALL
        SELECT g.model_ref, g.target, c.run_id
        FROM paged g JOIN picked p USING (model_ref, target)
        JOIN checks c ON c.skill_id = p.skill_id AND c.recorded_at = g.last_at
    )
    GROUP BY model_ref, target
)
SELECT g.model_ref, g.target, g.hardware, g.runtime, g.precision,
       h.run_id AS headline_run_id, h.recorded_at AS measured_at, h.batch, h.seq, h.p50_ms, h.tokens_per_s,
       h.samples_per_s, h.mfu, h.noisy, h.noise_reason,
       t.run_id AS test_run_id, t.checks_passed, t.checks_total,
       l.run_id AS last_run_id, g.last_at AS last_run_at, r.status, g.total
FROM paged g
LEFT JOIN headline h USING (model_ref, target)
LEFT JOIN test_counts t USING (model_ref, target)
LEFT JOIN last_run l USING (model_ref, target)
LEFT JOIN runs r ON r.run_id = l.run_id
ORDER BY g.model_ref, g.target
"""


def summary(
    store: ResultsStore, where: ResultFilter, limit: int | None = 100, offset: int = 0, recent: timedelta = RECENT
) -> tuple[list[dict[str, Any]], int]:
    """The rows of one page (ordered by model, target), and how many rows all pages hold.

    `recent` only splits the work (see the module docstring): any value gives the same rows.
    """
    skills, skill_params = where.skill_predicate("s")
    since_m, since_m_params = where.since_predicate("m")
    since_c, since_c_params = where.since_predicate("c")
    paging, page_params = page(limit, offset)
    # with no skill filter every row counts: no semi-join to pay for (rows without a skill row drop out later)
    picked_m, picked_c = (
        ("TRUE", "TRUE")
        if not skill_params
        else ("m.skill_id IN (SELECT skill_id FROM picked)", "c.skill_id IN (SELECT skill_id FROM picked)")
    )
    sql = _SUMMARY.format(
        skills=skills, picked_m=picked_m, picked_c=picked_c, since_m=since_m, since_c=since_c, page=paging
    )
    split = datetime.now(UTC) - recent
    if where.since is not None:
        split = max(split, where.since)
    rows = store.query(sql, [*skill_params, split, split, *since_m_params, *since_c_params, *page_params])
    total = rows[0]["total"] if rows else _total(store, where) if offset else 0
    for row in rows:
        del row["total"]
    return rows, total


def _total(store: ResultsStore, where: ResultFilter) -> int:
    """How many model x target rows there are, for a page past the end (which returns no row to carry it)."""
    skills, params = where.skill_predicate("s")
    since_m, since_m_params = where.since_predicate("m")
    since_c, since_c_params = where.since_predicate("c")
    sql = f"""
    SELECT count(*) AS n FROM (
        SELECT s.model_ref, s.target FROM measurements m JOIN skills s USING (skill_id) WHERE {skills} AND {since_m}
        UNION
        SELECT s.model_ref, s.target FROM checks c JOIN skills s USING (skill_id) WHERE {skills} AND {since_c}
    )
    """
    return store.query(sql, [*params, *since_m_params, *params, *since_c_params])[0]["n"]
