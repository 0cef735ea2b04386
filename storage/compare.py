"""Regression verdicts between two runs: per model, target, scenario and shape, from the per-round medians.

The rule is `stats.compare_rounds` (see its module for what it is and why); a point flagged noisy on
either side is `inconclusive`. Rows from before rounds were stored (schema 2) count as one round.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from accel.storage.stats import DEFAULT_THRESHOLD, Change, compare_rounds
from accel.storage.store import ResultsStore


class PointComparison(BaseModel):
    model_ref: str
    target: str
    scenario: str
    batch: int
    seq: int
    old_p50_ms: float | None
    new_p50_ms: float | None
    old_round_p50_ms: list[float] = []
    new_round_p50_ms: list[float] = []
    noisy: bool
    noise_reason: str | None = None  # why either side is flagged, "old: ...; new: ..."
    change: Change


def run_measurements(store: ResultsStore, run_id: str) -> list[dict[str, Any]]:
    """The measurements of a run and of the runs it started, with the model ref and target of each (from the
    file or through the API: both stores answer `run_measurements`)."""
    return store.run_measurements(run_id)


def _rounds(row: dict[str, Any]) -> list[float]:
    if row.get("round_p50_ms"):
        return list(row["round_p50_ms"])
    return [row["p50_ms"]] if row.get("p50_ms") is not None else []  # schema 2: one process, one round


def _noise(row: dict[str, Any]) -> str | None:
    if not row.get("noisy"):
        return None
    return row.get("noise_reason") or "flagged noisy"


def _key(row: dict[str, Any]) -> tuple:
    return (row["model_ref"], row["target"], row["scenario"], row["batch"], row["seq"])


def compare_runs(
    store: ResultsStore,
    old_run: str,
    new_run: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[PointComparison]:
    """Every point measured in either run (or the runs it started), with its verdict (latency: higher is worse).

    Raises KeyError when a run has no measurements at all.
    """
    old = {_key(r): r for r in run_measurements(store, old_run)}
    new = {_key(r): r for r in run_measurements(store, new_run)}
    for run, rows in ((old_run, old), (new_run, new)):
        if not rows:
            raise KeyError(f"run {run!r} has no measurements in {store!r}")
    results = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            change = Change(
                verdict="inconclusive",
                ratio=None,
                reason=f"measured only in the {'new' if a is None else 'old'} run",
            )
        elif a["status"] != "ok" or b["status"] != "ok":
            change = Change(
                verdict="inconclusive",
                ratio=None,
                reason=f"status {a['status']} -> {b['status']}: {b['error'] or a['error'] or ''}".strip(),
            )
        else:
            change = compare_rounds(
                _rounds(a),
                _rounds(b),
                threshold=threshold,
                old_noise=_noise(a),
                new_noise=_noise(b),
            )
        noise = "; ".join(f"{side}: {_noise(r)}" for side, r in (("old", a), ("new", b)) if r and _noise(r))
        results.append(
            PointComparison(
                model_ref=key[0],
                target=key[1],
                scenario=key[2],
                batch=key[3],
                seq=key[4],
                old_p50_ms=a["p50_ms"] if a else None,
                new_p50_ms=b["p50_ms"] if b else None,
                old_round_p50_ms=_rounds(a) if a else [],
                new_round_p50_ms=_rounds(b) if b else [],
                noisy=bool(noise),
                noise_reason=noise or None,
                change=change,
            )
        )
    return results
