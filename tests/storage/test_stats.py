"""Statistics on known samples: summaries, and the round verdicts in both directions."""

import numpy as np
import pytest

from accel.storage import compare_rounds, summarize


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
    assert compare_rounds(new, old, higher_is_better=True).verdict == "regressed"
    assert compare_rounds(old, new, threshold=0.25).verdict == "unchanged"  # 14% is under a 25% threshold


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
