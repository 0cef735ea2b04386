"""The verdicts of `accel compare` for a run, against a baseline run given or found.

The verdicts are `compare_runs`' own (one rule, in storage/stats.py); this module only finds the
baseline a caller did not name: the latest run of the same kind, started before this one, that
measured at least one of the skills this one measured (counting the runs each started).
"""

from __future__ import annotations

from accel.storage.compare import PointComparison, compare_runs
from accel.storage.store import ResultsStore

_PREVIOUS_RUN = """
WITH RECURSIVE this AS (
    SELECT run_id, kind, started_at FROM runs WHERE run_id = ?
),
family(root, run_id) AS (
    SELECT r.run_id, r.run_id FROM runs r, this
    WHERE r.kind = this.kind AND (r.run_id = this.run_id OR r.started_at < this.started_at)
    UNION
    SELECT f.root, r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id
),
measured AS (
    SELECT DISTINCT f.root, m.skill_id FROM family f JOIN measurements m ON m.run_id = f.run_id
)
SELECT r.run_id
FROM runs r, this
WHERE r.kind = this.kind AND r.run_id <> this.run_id AND r.started_at < this.started_at
  AND EXISTS (
      SELECT 1 FROM measured a JOIN measured b ON a.skill_id = b.skill_id
      WHERE a.root = this.run_id AND b.root = r.run_id
  )
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
