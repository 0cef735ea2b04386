"""Statistics on benchmark samples: summaries, and the regression verdict between two sets of samples.

A change counts only when it is both large (the ratio of medians past a threshold) and significant
(a two-sided Mann-Whitney U test on the raw samples), as asv decides: a large but insignificant
change is `inconclusive`, a significant but small one `unchanged`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

Verdict = Literal["improved", "regressed", "unchanged", "inconclusive"]
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
MIN_SAMPLES = 3  # fewer cannot reach p < 0.01 whatever they say


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
    p_value: float | None
    reason: str


def compare_samples(
    old: list[float],
    new: list[float],
    *,
    higher_is_better: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Change:
    """The verdict for `new` against `old`. Latency: higher is worse; throughput: `higher_is_better`."""
    if len(old) < MIN_SAMPLES or len(new) < MIN_SAMPLES:
        return Change(
            verdict="inconclusive",
            ratio=None,
            p_value=None,
            reason=f"{len(old)} and {len(new)} samples: at least {MIN_SAMPLES} each are needed",
        )
    old_median, new_median = float(np.median(old)), float(np.median(new))
    if old_median <= 0:
        return Change(verdict="inconclusive", ratio=None, p_value=None, reason="the old median is not positive")
    ratio = new_median / old_median
    from scipy.stats import mannwhitneyu  # here, not at import: scipy.stats costs every process 0.6 s

    p_value = float(mannwhitneyu(old, new, alternative="two-sided").pvalue)
    change = ratio - 1.0
    worse = change < 0 if higher_is_better else change > 0
    described = f"median {old_median:.4g} -> {new_median:.4g} ({change:+.1%}), Mann-Whitney p = {p_value:.2g}"
    if abs(change) < threshold:
        return Change(
            verdict="unchanged",
            ratio=ratio,
            p_value=p_value,
            reason=f"{described}: within the {threshold:.0%} threshold",
        )
    if p_value >= alpha:
        return Change(
            verdict="inconclusive",
            ratio=ratio,
            p_value=p_value,
            reason=f"{described}: past the threshold but not significant (p >= {alpha:g})",
        )
    return Change(verdict="regressed" if worse else "improved", ratio=ratio, p_value=p_value, reason=described)
