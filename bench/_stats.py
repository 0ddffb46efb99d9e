"""Statistics for the benchmarks (no side effects on import: the unit tests import it)."""

from __future__ import annotations

import math


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median of ``values``: (low, high, coverage).

    From order statistics: the k-th smallest and k-th largest value, for the largest k whose
    interval still covers the median with probability >= ``level`` (binomial, p = 1/2). With
    too few values for ``level`` it is the whole range, and ``coverage`` says what that is.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    k, coverage = 1, 1 - 2 * 0.5**n  # [min, max] misses the median if all fall on one side
    while k + 1 <= (n + 1) // 2:
        # P(fewer than k+1 values below the median) = P(Binomial(n, 1/2) <= k)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        if 1 - 2 * tail < level:
            break
        k, coverage = k + 1, 1 - 2 * tail
    return ordered[k - 1], ordered[n - k], coverage
