"""Statistics on benchmark samples: summaries, and the regression verdict between two runs.

The verdict (`compare_rounds`) works on per-round statistics: each point is measured in R rounds,
each round a process of its own, and each round gives one median. On a shared machine the variation
*between* processes (placement, frequency, caches, neighbours: five runs of one point here gave p50
165-189 ms, each with a per-call cv of only 3-6%) dwarfs the variation between calls of one process,
so a test on per-call samples (the old Mann-Whitney on thousands of calls) calls noise significant:
2 of 3 quiet A/A pairs came out regressed or improved. A rank test on the round medians cannot help
either: with 3 rounds against 3 the smallest two-sided Mann-Whitney p-value is 2/C(6,3) = 0.1, so it
never reaches 0.01. The rule instead asks three things of a change, all of which noise rarely does:

1. large: the ratio of the medians of the round medians is past `threshold`;
2. separated: every round of one run is slower than every round of the other (the ranges of round
   medians do not overlap; for 3 vs 3 rounds, chance alone orders them so 1 time in 20 per direction);
3. beyond the spread: the change is larger than the relative range of round medians within either run.

A large change that fails 2 or 3 is `inconclusive`; a change under the threshold `unchanged`. A side
flagged noisy (other processes used the cores while it was measured) is `inconclusive` whatever the
figures say: a contended figure can neither prove nor hide a regression. Fewer than 2 rounds on a
side show no between-process variation at all, so they are `inconclusive` too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

Verdict = Literal["improved", "regressed", "unchanged", "inconclusive"]
DEFAULT_THRESHOLD = 0.05
MIN_ROUNDS = 2  # one round shows nothing of the variation between processes


class Summary(BaseModel):
    count: int
    mean: float
    std: float
    cv: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


def summarize(samples: list[float] | np.ndarray) -> Summary:
    """Mean, standard deviation (n-1), coefficient of variation and percentiles (linear interpolation)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(values, [50, 90, 95, 99]))
    return Summary(
        count=int(values.size),
        mean=mean,
        std=std,
        cv=std / mean if mean else 0.0,
        min=float(values.min()),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(values.max()),
    )


class Change(BaseModel):
    verdict: Verdict
    ratio: float | None  # median(new) / median(old)
    reason: str


def compare_rounds(
    old: list[float],
    new: list[float],
    *,
    higher_is_better: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    old_noise: str | None = None,
    new_noise: str | None = None,
) -> Change:
    """The verdict for `new` against `old` from their per-round medians (the rule in the module docstring).

    `old_noise` / `new_noise`: why a side is flagged noisy (None when it is not); a noisy side is never
    `regressed` or `improved`.
    """
    noise = [f"the {side} figure is noisy ({why})" for side, why in (("old", old_noise), ("new", new_noise)) if why]
    if len(old) < MIN_ROUNDS or len(new) < MIN_ROUNDS:
        noise.append(f"{len(old)} and {len(new)} rounds: at least {MIN_ROUNDS} each are needed")
    old_median = float(np.median(old)) if old else 0.0
    new_median = float(np.median(new)) if new else 0.0
    ratio = new_median / old_median if old_median > 0 else None
    if noise or ratio is None:
        return Change(verdict="inconclusive", ratio=ratio, reason="; ".join(noise) or "no old median")
    change = ratio - 1.0
    spread = max((max(old) - min(old)) / old_median, (max(new) - min(new)) / new_median)
    separated = min(new) > max(old) if change > 0 else max(new) < min(old)
    worse = change < 0 if higher_is_better else change > 0
    described = (
        f"median of {len(old)} -> {len(new)} round medians {old_median:.4g} -> {new_median:.4g} ({change:+.1%}), "
        f"rounds {min(old):.4g}-{max(old):.4g} vs {min(new):.4g}-{max(new):.4g}, spread {spread:.1%}"
    )
    if abs(change) < threshold:
        return Change(verdict="unchanged", ratio=ratio, reason=f"{described}: within {threshold:.0%}")
    if not separated:
        return Change(verdict="inconclusive", ratio=ratio, reason=f"{described}: the rounds overlap")
    if abs(change) <= spread:
        return Change(
            verdict="inconclusive",
            ratio=ratio,
            reason=f"{described}: not larger than the spread between rounds",
        )
    return Change(verdict="regressed" if worse else "improved", ratio=ratio, reason=described)
