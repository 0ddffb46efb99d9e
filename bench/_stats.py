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
    # tail = P(Binomial(n, 1/2) <= k - 1): the chance that fewer than k values fall below the
    # median, which is when [k-th smallest, k-th largest] misses it (on either side: twice)
    tail = 0.5**n
    k, coverage = 1, 1 - 2 * tail
    while k + 1 <= (n + 1) // 2:
        tail += math.comb(n, k) / 2**n
        if 1 - 2 * tail < level:
            break
        k, coverage = k + 1, 1 - 2 * tail
    return ordered[k - 1], ordered[n - k], coverage
