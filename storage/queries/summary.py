"""One row per model x target: the headline figure of its latest benchmark, its latest test, its last run.

The headline point is the one `chain` reports: of the run that made the model x target's latest ok
`forward` measurement, the first ok forward point (smallest batch, then seq). A figure always comes
with its noisy flag and reason.
"""

from __future__ import annotations

from typing import Any

from accel.storage.queries.filters import ResultFilter, page
from accel.storage.store import ResultsStore

_SUMMARY = """
WITH picked AS (
    SELECT s.skill_id, s.model_ref, s.target, s.hardware, s.runtime, s.precision FROM skills s WHERE {skills}
),
measured AS (
    SELECT p.model_ref, p.target, m.run_id, m.scenario, m.status, m.recorded_at
    FROM measurements m JOIN picked p USING (skill_id)
    WHERE {since_m}
),
tested AS (
    SELECT p.model_ref, p.target, c.run_id, c.status, c.recorded_at
    FROM checks c JOIN picked p USING (skill_id)
    WHERE {since_c}
),
headline_run AS (
    SELECT model_ref, target, arg_max(run_id, recorded_at) AS run_id
    FROM measured WHERE status = 'ok' AND scenario = 'forward'
    GROUP BY model_ref, target
),
headline AS (
    SELECT h.model_ref, h.target, h.run_id, m.batch, m.seq, m.p50_ms, m.tokens_per_s, m.samples_per_s, m.mfu,
           coalesce(m.noisy, FALSE) AS noisy, m.noise_reason, m.recorded_at
    FROM headline_run h
    JOIN picked p ON p.model_ref = h.model_ref AND p.target = h.target
    JOIN measurements m ON m.skill_id = p.skill_id AND m.run_id = h.run_id
    WHERE m.status = 'ok' AND m.scenario = 'forward'
    QUALIFY row_number() OVER (PARTITION BY h.model_ref, h.target ORDER BY m.batch, m.seq, m.recorded_at DESC) = 1
),
latest_test AS (
    SELECT model_ref, target, arg_max(run_id, recorded_at) AS run_id FROM tested GROUP BY model_ref, target
),
test_counts AS (
    SELECT t.model_ref, t.target, t.run_id,
           count(*) FILTER (WHERE t.status = 'passed') AS checks_passed, count(*) AS checks_total
    FROM tested t JOIN latest_test l USING (model_ref, target, run_id)
    GROUP BY t.model_ref, t.target, t.run_id
),
activity AS (
    SELECT model_ref, target, arg_max(run_id, recorded_at) AS last_run_id, max(recorded_at) AS last_run_at
    FROM (SELECT model_ref, target, run_id, recorded_at FROM measured
          UNION ALL SELECT model_ref, target, run_id, recorded_at FROM tested)
    GROUP BY model_ref, target
)
SELECT a.model_ref, a.target,
       any_value(p.hardware) AS hardware, any_value(p.runtime) AS runtime, any_value(p.precision) AS precision,
       any_value(h.run_id) AS headline_run_id, any_value(h.recorded_at) AS measured_at,
       any_value(h.batch) AS batch, any_value(h.seq) AS seq, any_value(h.p50_ms) AS p50_ms,
       any_value(h.tokens_per_s) AS tokens_per_s, any_value(h.samples_per_s) AS samples_per_s,
       any_value(h.mfu) AS mfu, any_value(h.noisy) AS noisy, any_value(h.noise_reason) AS noise_reason,
       any_value(t.run_id) AS test_run_id, any_value(t.checks_passed) AS checks_passed,
       any_value(t.checks_total) AS checks_total,
       any_value(a.last_run_id) AS last_run_id, any_value(a.last_run_at) AS last_run_at,
       any_value(r.status) AS status,
       count(*) OVER () AS total
FROM activity a
JOIN picked p USING (model_ref, target)
LEFT JOIN headline h USING (model_ref, target)
LEFT JOIN test_counts t USING (model_ref, target)
LEFT JOIN runs r ON r.run_id = a.last_run_id
GROUP BY a.model_ref, a.target
ORDER BY a.model_ref, a.target
{page}
"""


def summary(
    store: ResultsStore, where: ResultFilter, limit: int | None = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The rows of one page (ordered by model, target), and how many rows all pages hold."""
    skills, skill_params = where.skill_predicate("s")
    since_m, since_m_params = where.since_predicate("m")
    since_c, since_c_params = where.since_predicate("c")
    paging, page_params = page(limit, offset)
    sql = _SUMMARY.format(skills=skills, since_m=since_m, since_c=since_c, page=paging)
    rows = store.query(sql, [*skill_params, *since_m_params, *since_c_params, *page_params])
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
