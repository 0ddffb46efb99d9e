"""The benchmarks' statistics: the confidence interval printed for the median pair ratio."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _stats import median_interval  # bench/ is not a package: on the path just set


def test_interval_is_the_order_statistics_with_at_least_the_level() -> None:
    # n = 12: P(Binomial(12, 1/2) <= 2) = 79/4096, so the 3rd smallest to the 3rd largest
    low, high, coverage = median_interval([float(v) for v in range(12, 0, -1)])
    assert (low, high) == (3.0, 10.0)
    assert coverage == pytest.approx(1 - 2 * 79 / 4096)
    # one step narrower would cover less than 95%
    assert 1 - 2 * sum(math.comb(12, i) for i in range(4)) / 4096 < 0.95


def test_few_values_give_the_whole_range_and_say_how_little_it_covers() -> None:
    assert median_interval([0.9, 0.8, 1.0]) == (0.8, 1.0, 0.75)
    low, high, coverage = median_interval([0.82, 0.84, 0.93, 0.94, 0.82, 0.88])
    assert (low, high) == (0.82, 0.94)
    assert coverage == pytest.approx(1 - 2 / 64)
    with pytest.raises(ValueError, match="at least one value"):
        median_interval([])


def test_interval_covers_the_true_median_about_as_often_as_it_claims() -> None:
    rng = random.Random(7)
    hits, trials = 0, 4000
    for _ in range(trials):
        low, high, coverage = median_interval([rng.gauss(0.9, 0.05) for _ in range(12)])
        hits += low <= 0.9 <= high
    assert coverage == pytest.approx(0.9614, abs=1e-4)
    assert abs(hits / trials - coverage) < 0.02
