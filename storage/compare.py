"""Regression verdicts between two runs: per model, target, scenario and shape, from the raw samples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from accel.storage.stats import DEFAULT_ALPHA, DEFAULT_THRESHOLD, Change, compare_samples
from accel.storage.store import ResultsStore

# A run's measurements, and those of the runs it started (a pipeline's chains, a nightly's pipeline).
_MEASURED = """
WITH RECURSIVE family(run_id) AS (
    SELECT ?::VARCHAR
    UNION
    SELECT r.run_id FROM runs r JOIN family f ON r.parent_run_id = f.run_id
)
SELECT s.model_ref, s.target, m.scenario, m.batch, m.seq, m.status, m.samples_ms, m.p50_ms, m.tokens_per_s,
       m.samples_per_s, m.noisy, m.error
FROM measurements m JOIN skills s USING (skill_id)
WHERE m.run_id IN (SELECT run_id FROM family)
ORDER BY m.recorded_at
"""


class PointComparison(BaseModel):
    model_ref: str
    target: str
    scenario: str
    batch: int
    seq: int
    old_p50_ms: float | None
    new_p50_ms: float | None
    noisy: bool
    change: Change


def run_measurements(store: ResultsStore, run_id: str) -> list[dict[str, Any]]:
    """The measurements of a run and of the runs it started, with the model ref and target of each."""
    return store.query(_MEASURED, [run_id])


def _key(row: dict[str, Any]) -> tuple:
    return (row["model_ref"], row["target"], row["scenario"], row["batch"], row["seq"])


def compare_runs(
    store: ResultsStore,
    old_run: str,
    new_run: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> list[PointComparison]:
    """Every point measured in either run (or the runs it started), with its verdict (latency: higher is worse).

    Raises KeyError when a run has no measurements at all.
    """
    old = {_key(r): r for r in run_measurements(store, old_run)}
    new = {_key(r): r for r in run_measurements(store, new_run)}
    for run, rows in ((old_run, old), (new_run, new)):
        if not rows:
            raise KeyError(f"run {run!r} has no measurements in {store.path}")
    results = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            change = Change(
                verdict="inconclusive",
                ratio=None,
                p_value=None,
                reason=f"measured only in the {'new' if a is None else 'old'} run",
            )
        elif a["status"] != "ok" or b["status"] != "ok":
            change = Change(
                verdict="inconclusive",
                ratio=None,
                p_value=None,
                reason=f"status {a['status']} -> {b['status']}: {b['error'] or a['error'] or ''}".strip(),
            )
        else:
            change = compare_samples(
                a["samples_ms"], b["samples_ms"], higher_is_better=False, threshold=threshold, alpha=alpha
            )
        results.append(
            PointComparison(
                model_ref=key[0],
                target=key[1],
                scenario=key[2],
                batch=key[3],
                seq=key[4],
                old_p50_ms=a["p50_ms"] if a else None,
                new_p50_ms=b["p50_ms"] if b else None,
                noisy=bool((a and a["noisy"]) or (b and b["noisy"])),
                change=change,
            )
        )
    return results
