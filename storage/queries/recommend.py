"""Which target to run a model on at one shape: the fastest whose latest checks all passed.

Each target is judged on its latest measurement at that scenario and shape, and on its latest test (the
latest run that recorded checks of that model x target). A target ranks only when that measurement
is ok and not noisy and every check of that test passed; every other target is listed with why it
did not rank. Rank 1 is the lowest p50.
"""

from __future__ import annotations

from typing import Any

from accel.storage.store import ResultsStore

_CANDIDATES = """
WITH model_skills AS (
    SELECT skill_id, target FROM skills WHERE model_ref = ?
),
latest_at AS (
    SELECT m.skill_id, max(m.recorded_at) AS at
    FROM measurements m
    WHERE m.skill_id IN (SELECT skill_id FROM model_skills) AND m.scenario = ? AND m.batch = ? AND m.seq = ?
    GROUP BY m.skill_id
),
latest AS (
    SELECT k.target,
           arg_max(struct_pack(run_id := m.run_id, status := m.status, p50_ms := m.p50_ms,
                               tokens_per_s := m.tokens_per_s, samples_per_s := m.samples_per_s,
                               noisy := coalesce(m.noisy, FALSE), noise_reason := m.noise_reason,
                               error := m.error, recorded_at := m.recorded_at),
                   m.recorded_at) AS v
    FROM latest_at l
    JOIN measurements m ON m.skill_id = l.skill_id AND m.recorded_at = l.at
    JOIN model_skills k ON k.skill_id = m.skill_id
    WHERE m.scenario = ? AND m.batch = ? AND m.seq = ?
    GROUP BY k.target
),
tested AS (
    SELECT k.target, c.run_id, c."check", c.status, c.recorded_at
    FROM checks c JOIN model_skills k USING (skill_id)
    WHERE k.target IN (SELECT target FROM latest)
),
latest_test AS (
    SELECT target, arg_max(run_id, recorded_at) AS run_id FROM tested GROUP BY target
),
verdicts AS (
    SELECT t.target, t.run_id, count(*) AS checks_total, count(*) FILTER (WHERE t.status = 'passed') AS checks_passed,
           string_agg(t."check" || ' ' || t.status, ', ' ORDER BY t."check") FILTER (WHERE t.status <> 'passed')
               AS not_passed
    FROM tested t JOIN latest_test USING (target, run_id)
    GROUP BY t.target, t.run_id
),
judged AS (
    SELECT l.target, l.v.run_id AS run_id, l.v.status AS status, l.v.p50_ms AS p50_ms,
           l.v.tokens_per_s AS tokens_per_s, l.v.samples_per_s AS samples_per_s, l.v.noisy AS noisy,
           l.v.noise_reason AS noise_reason, l.v.recorded_at AS measured_at,
           v.run_id AS test_run_id, v.checks_passed, v.checks_total,
           CASE
               WHEN l.v.status <> 'ok' THEN 'latest measurement ' || l.v.status || coalesce(': ' || l.v.error, '')
               WHEN l.v.p50_ms IS NULL THEN 'latest measurement has no p50'
               WHEN v.run_id IS NULL THEN 'never tested'
               WHEN v.checks_passed < v.checks_total THEN
                   'latest test ' || v.run_id || ': ' || v.checks_passed || '/' || v.checks_total
                   || ' checks passed (' || v.not_passed || ')'
               WHEN l.v.noisy THEN 'noisy: ' || coalesce(l.v.noise_reason, 'flagged noisy')
           END AS excluded_reason
    FROM latest l LEFT JOIN verdicts v USING (target)
)
SELECT *,
       CASE WHEN excluded_reason IS NULL THEN row_number() OVER (
           PARTITION BY excluded_reason IS NULL ORDER BY p50_ms, target) END AS rank
FROM judged
ORDER BY rank NULLS LAST, target
"""

_SHAPES = """
SELECT m.scenario, m.batch, m.seq, list(DISTINCT s.target ORDER BY s.target) AS targets
FROM measurements m JOIN skills s USING (skill_id)
WHERE s.model_ref = ? AND m.status = 'ok'
GROUP BY m.scenario, m.batch, m.seq
ORDER BY m.scenario, m.batch, m.seq
LIMIT 50
"""


def candidates(
    store: ResultsStore, model: str, batch: int, seq: int, scenario: str = "forward"
) -> list[dict[str, Any]]:
    """Every target measured at that point, ranked ones first (rank 1, 2, ...), then the excluded with why."""
    return store.query(_CANDIDATES, [model, scenario, batch, seq, scenario, batch, seq])


def measured_shapes(store: ResultsStore, model: str) -> list[dict[str, Any]]:
    """The (scenario, batch, seq) points with ok measurements of `model` (at most 50), and on which targets."""
    return store.query(_SHAPES, [model])
