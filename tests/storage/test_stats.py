"""Statistics on known samples: summaries, the U test, and verdicts in both directions."""

import numpy as np
import pytest

from accel.storage import compare_rounds, compare_samples, summarize


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


# The verdict between runs: per-round medians (one per process), storage/stats.compare_rounds.


def test_a_a_rounds_are_not_regressed():
    # three quiet back-to-back runs seen on a 2-core machine: p50 24.7, 33.0, 25.4 ms, each run's
    # rounds spread like this: the old per-call test called 2 of 3 such pairs regressed or improved
    runs = [[24.7, 26.1, 25.0], [33.0, 25.9, 27.2], [25.4, 24.9, 26.6]]
    for old in runs:
        for new in runs:
            assert compare_rounds(old, new).verdict in ("unchanged", "inconclusive")


def test_clearly_separated_rounds_are_regressed_and_the_reverse_improved():
    old, new = [10.0, 10.2, 10.1], [11.5, 11.6, 11.4]
    worse = compare_rounds(old, new)
    assert worse.verdict == "regressed" and worse.ratio == pytest.approx(11.5 / 10.1)
    assert compare_rounds(new, old).verdict == "improved"
    assert compare_rounds(old, new, higher_is_better=True).verdict == "improved"


def test_a_large_change_with_overlapping_or_wide_rounds_is_inconclusive():
    overlapping = compare_rounds([10.0, 10.1, 12.0], [11.5, 11.6, 11.4])
    assert overlapping.verdict == "inconclusive" and "overlap" in overlapping.reason
    # separated, but one run's own rounds spread wider than the change between the runs
    wide = compare_rounds([9.0, 10.0, 10.4], [11.0, 11.2, 12.6])
    assert wide.verdict == "inconclusive" and "spread" in wide.reason
    assert compare_rounds([10.0, 10.1, 10.2], [10.2, 10.3, 10.4]).verdict == "unchanged"  # under 5%


def test_a_noisy_side_or_a_single_round_is_inconclusive_never_regressed():
    old, new = [10.0, 10.2, 10.1], [20.0, 20.1, 20.2]
    noisy = compare_rounds(old, new, new_noise="other processes used 48% of the 2 cores")
    assert noisy.verdict == "inconclusive" and "48%" in noisy.reason
    assert compare_rounds(old, new, old_noise="steal").verdict == "inconclusive"
    single = compare_rounds([10.0], [20.0])
    assert single.verdict == "inconclusive" and "rounds" in single.reason
