"""Free helpers over released values: they use only numbers an analyst already has (a value and its
interval), never data, so they cost no privacy budget. Exposed as SQL functions (proxy.catalog).

They read the Laplace scale back from a continuous Laplace interval at the given confidence:
b = half-width / ln(1 / (1 - confidence)). That is exact for SUM and close for COUNT (whose discrete
interval is a little wider); for AVG / VARIANCE (conservative intervals) the results are conservative.
"""

from __future__ import annotations

import math

from privacy.mechanisms import Laplace


def implied_scale(low: float, high: float, confidence: float = 0.95) -> float:
    return (high - low) / 2 / math.log(1 / (1 - confidence))


def prob_greater(
    a: float, a_low: float, a_high: float, b: float, b_low: float, b_high: float, confidence: float = 0.95
) -> float:
    """P(true A > true B | released A, B), a flat prior on the truths, independent Laplace noises.

    >>> round(prob_greater(100, 90, 110, 100, 90, 110), 3)
    0.5
    >>> prob_greater(200, 190, 210, 100, 90, 110) > 0.999
    True
    """
    b1, b2 = implied_scale(a_low, a_high, confidence), implied_scale(b_low, b_high, confidence)
    return _difference_cdf(a - b, b1, b2)


def _difference_cdf(x: float, b1: float, b2: float) -> float:
    """P(Z1 - Z2 < x) for independent Laplace(b1), Laplace(b2) (symmetric, so P(D > -x) likewise)."""
    t = abs(x)
    if math.isclose(b1, b2, rel_tol=1e-9):
        above = math.exp(-t / b1) * (2 * b1 + t) / (4 * b1)
    else:
        above = (b1 * b1 * math.exp(-t / b1) - b2 * b2 * math.exp(-t / b2)) / (2 * (b1 * b1 - b2 * b2))
    return 1 - above if x >= 0 else above


def interval_at(
    value: float, low: float, high: float, epsilon_now: float, epsilon_new: float
) -> tuple[float, float]:
    """The interval the same question would have at another ε (noise scales as 1/ε).

    >>> interval_at(100.0, 90.0, 110.0, 0.5, 1.0)
    (95.0, 105.0)
    """
    half = (high - low) / 2 * epsilon_now / epsilon_new
    return value - half, value + half


def hypothetical(value: float, low: float, high: float, count: int, confidence: float = 0.95) -> list[float]:
    """`count` plausible true values given the released one (value minus fresh Laplace noise)."""
    count = max(1, min(int(count), 1000))
    noise = Laplace(implied_scale(low, high, confidence)).release([0.0] * count)
    return [value - z for z in noise]
