"""The verdicts of `accel compare` for a run, against a baseline run given or found.

The verdicts are `compare_runs`' own (one rule, in storage/stats.py); this module only finds the
baseline a caller did not name: the latest run of the same kind, started before this one, that
measured at least one of the skills this one measured (counting the runs each started).
"""

from __future__ import annotations

from accel.storage.compare import PointComparison, compare_runs
from accel.storage.store import ResultsStore

# Up from the runs that measured this run's skills to their ancestors, rather than down from every
# earlier run: one pass over the measurements, whatever the number of runs.
_PREVIOUS_RUN = """
WITH RECURSIVE this AS (
    SELECT run_id, kind, started_at FROM runs WHERE run_id = ?
),
family(run_id) AS (
    SELECT run_id FROM this
    UNION
    SELECT r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id
),
its_skills AS (
    SELECT DISTINCT skill_id FROM measurements WHERE run_id IN (SELECT run_id FROM family)
),
measured_them AS (
    SELECT DISTINCT run_id FROM measurements
    WHERE skill_id IN (SELECT skill_id FROM its_skills) AND run_id NOT IN (SELECT run_id FROM family)
),
lineage(run_id) AS (
    SELECT run_id FROM measured_them
    UNION
    SELECT r.parent_run_id FROM runs r JOIN lineage l ON r.run_id = l.run_id WHERE r.parent_run_id IS NOT NULL
)
SELECT r.run_id
FROM runs r, this
WHERE r.run_id IN (SELECT run_id FROM lineage)
  AND r.kind = this.kind AND r.run_id <> this.run_id AND r.started_at < this.started_at
ORDER BY r.started_at DESC, r.run_id DESC
LIMIT 1
"""


def previous_run(store: ResultsStore, run_id: str) -> str | None:
    """The baseline `accel compare` would pick for `run_id` (None when no earlier run fits)."""
    rows = store.query(_PREVIOUS_RUN, [run_id])
    return rows[0]["run_id"] if rows else None


def regressions(store: ResultsStore, run_id: str, baseline: str) -> list[PointComparison]:
    """Every point of either run with its verdict; KeyError when either run has no measurements."""
    return compare_runs(store, baseline, run_id)
