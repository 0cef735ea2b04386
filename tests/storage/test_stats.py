"""Statistics on known samples: summaries, the U test, and verdicts in both directions."""

import numpy as np
import pytest

from accel.storage import compare_samples, summarize


def test_summary_of_known_samples():
    stats = summarize(list(range(1, 101)))
    assert (stats.count, stats.min, stats.max, stats.mean) == (100, 1, 100, 50.5)
    assert stats.p50 == pytest.approx(50.5) and stats.p90 == pytest.approx(90.1)
    assert stats.p95 == pytest.approx(95.05) and stats.p99 == pytest.approx(99.01)
    assert stats.std == pytest.approx(np.std(range(1, 101), ddof=1))
    assert stats.cv == pytest.approx(stats.std / 50.5)
    assert summarize([4.0]).std == 0.0
    with pytest.raises(ValueError):
        summarize([])


RNG = np.random.default_rng(7)
BASE = list(10 + RNG.normal(0, 0.2, 60))
SLOWER = [v * 1.2 for v in BASE[::-1]]


def test_slower_latency_is_a_regression_and_faster_an_improvement():
    worse = compare_samples(BASE, SLOWER)
    assert worse.verdict == "regressed" and worse.ratio == pytest.approx(1.2, rel=0.01) and worse.p_value < 1e-6
    assert compare_samples(SLOWER, BASE).verdict == "improved"


def test_direction_flips_for_throughput():
    assert compare_samples(BASE, SLOWER, higher_is_better=True).verdict == "improved"
    assert compare_samples(SLOWER, BASE, higher_is_better=True).verdict == "regressed"


def test_a_change_must_be_both_large_and_significant():
    small_but_significant = [v * 1.02 for v in BASE]
    change = compare_samples(BASE, small_but_significant)
    assert change.p_value < 0.01 and change.verdict == "unchanged"
    # 20% slower in the median, but with so much spread it could be chance.
    noisy_old = [10, 30, 5, 12, 40, 8]
    noisy_new = [12, 36, 6, 14.4, 48, 9.6]
    change = compare_samples(noisy_old, noisy_new)
    assert abs(change.ratio - 1) >= 0.05 and change.p_value >= 0.01 and change.verdict == "inconclusive"
    assert compare_samples(BASE, SLOWER, threshold=0.25).verdict == "unchanged"
    assert compare_samples([1.0, 2.0], [3.0, 4.0]).verdict == "inconclusive"  # too few samples
