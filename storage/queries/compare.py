"""Speedup of every target of a model over a baseline target, per scenario and shape.

Each side is its latest ok measurement at that point; speedup = baseline p50 / target p50 (above 1:
the target is faster). A point is noisy when either side is, with both reasons.
"""

from __future__ import annotations

from typing import Any

from accel.storage.store import ResultsStore

# Two passes: the latest time of each point from cheap columns, then only the rows at those times (the
# join's time range is pushed into the scan, which then reads only the row groups holding them).
_LATEST_OK = """
latest_at AS (
    SELECT m.skill_id, m.scenario, m.batch, m.seq, max(m.recorded_at) AS at
    FROM measurements m
    WHERE m.skill_id IN (SELECT skill_id FROM skills WHERE model_ref = ?) AND m.status = 'ok'
    GROUP BY m.skill_id, m.scenario, m.batch, m.seq
),
latest AS (
    SELECT s.target, m.scenario, m.batch, m.seq,
           arg_max(struct_pack(run_id := m.run_id, p50_ms := m.p50_ms, tokens_per_s := m.tokens_per_s,
                               samples_per_s := m.samples_per_s, prefill_ms := m.prefill_ms,
                               decode_ms_per_token := m.decode_ms_per_token,
                               bandwidth_utilization := m.bandwidth_utilization, noisy := coalesce(m.noisy, FALSE),
                               noise_reason := m.noise_reason, recorded_at := m.recorded_at),
                   m.recorded_at) AS v
    FROM latest_at l
    JOIN measurements m ON m.skill_id = l.skill_id AND m.recorded_at = l.at AND m.scenario = l.scenario
                       AND m.batch = l.batch AND m.seq = l.seq
    JOIN skills s ON s.skill_id = m.skill_id
    WHERE m.status = 'ok' AND m.p50_ms > 0
    GROUP BY s.target, m.scenario, m.batch, m.seq
)
"""

_SPEEDUP = f"""
WITH {_LATEST_OK}
SELECT t.target, t.scenario, t.batch, t.seq,
       b.v.p50_ms AS baseline_p50_ms, t.v.p50_ms AS p50_ms, b.v.p50_ms / t.v.p50_ms AS speedup,
       t.v.tokens_per_s AS tokens_per_s, t.v.samples_per_s AS samples_per_s, t.v.prefill_ms AS prefill_ms,
       t.v.decode_ms_per_token AS decode_ms_per_token, t.v.bandwidth_utilization AS bandwidth_utilization,
       b.v.run_id AS baseline_run_id, t.v.run_id AS run_id,
       b.v.recorded_at AS baseline_measured_at, t.v.recorded_at AS measured_at,
       b.v.noisy OR t.v.noisy AS noisy,
       nullif(concat_ws('; ',
                        CASE WHEN b.v.noisy THEN 'baseline: ' || coalesce(b.v.noise_reason, 'flagged noisy') END,
                        CASE WHEN t.v.noisy THEN 'target: ' || coalesce(t.v.noise_reason, 'flagged noisy') END),
              '') AS noise_reason
FROM latest t JOIN latest b ON b.target = ? AND b.scenario = t.scenario AND b.batch = t.batch AND b.seq = t.seq
WHERE t.target <> ?
ORDER BY t.scenario, t.batch, t.seq, t.target
"""

_MEASURED_TARGETS = f"""
WITH {_LATEST_OK}
SELECT list(DISTINCT target ORDER BY target) AS targets FROM latest
"""


def speedups(store: ResultsStore, model: str, baseline: str) -> list[dict[str, Any]]:
    """Every (target, scenario, batch, seq) point measured ok on both `baseline` and another target."""
    return store.query(_SPEEDUP, [model, baseline, baseline])


def measured_targets(store: ResultsStore, model: str) -> list[str]:
    """The targets with at least one ok measurement of `model` (to say why a comparison is empty)."""
    return store.query(_MEASURED_TARGETS, [model])[0]["targets"] or []
