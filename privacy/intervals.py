"""Confidence intervals computed from released values and noise parameters only (post-processing).

They describe the noise we added, not sampling error: "the true value of this aggregate over the
data, after clipping, lies in the interval with probability at least `confidence`".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from privacy.mechanisms import Mechanism


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def additive(released: float, mechanism: Mechanism, confidence: float) -> Interval:
    """Interval for value + noise: exact coverage for continuous noise, at least `confidence` for discrete."""
    k = mechanism.half_width(1 - confidence)
    return Interval(released - k, released + k)


def ratio_of_centred_sum(
    noisy_centred_sum: float,
    sum_mechanism: Mechanism,
    noisy_count: float,
    count_mechanism: Mechanism,
    midpoint: float,
    lower: float,
    upper: float,
    confidence: float,
) -> Interval:
    """Interval for an average released as midpoint + S/C, where S is the noisy sum of (x - midpoint).

    Each of S and C gets an interval at level 1 - α/2 (Bonferroni), so both hold together with
    probability at least 1 - α; S/C is monotone in each argument on C > 0, so its range over the box
    is reached at a corner. The result is clipped to the declared bounds, where the true average of
    clipped values always lies. Coverage is therefore at least `confidence` (conservative).
    """
    alpha = 1 - confidence
    s = additive(noisy_centred_sum, sum_mechanism, 1 - alpha / 2)
    c = additive(noisy_count, count_mechanism, 1 - alpha / 2)
    c_low = max(c.low, 1.0)  # a released average comes from a non-empty group
    if c.high < 1.0:
        return Interval(lower, upper)
    corners = [sv / cv for sv in (s.low, s.high) for cv in (c_low, max(c.high, 1.0))]
    low = min(max(midpoint + min(corners), lower), upper)
    high = max(min(midpoint + max(corners), upper), lower)
    return Interval(low, high)


def variance(
    noisy_squares: float,
    squares_mechanism: Mechanism,
    noisy_centred_sum: float,
    sum_mechanism: Mechanism,
    noisy_count: float,
    count_mechanism: Mechanism,
    radius: float,
    sample: bool,
    confidence: float,
) -> Interval:
    """Interval for a variance released from Q = Σ(x - mid)², S = Σ(x - mid) and a count N.

    Q, S and N each get an interval at level 1 - α/3 (Bonferroni); the variance Q/N - (S/N)² (times
    N/(N-1) for the sample variance) is minimised and maximised over that box (corners, S = 0 when
    the box spans it, and a grid of N), then clipped to the feasible range [0, radius²·N/(N-1)].
    """
    alpha = 1 - confidence
    q = additive(noisy_squares, squares_mechanism, 1 - alpha / 3)
    s = additive(noisy_centred_sum, sum_mechanism, 1 - alpha / 3)
    c = additive(noisy_count, count_mechanism, 1 - alpha / 3)
    n_low, n_high = max(c.low, 2.0 if sample else 1.0), max(c.high, 2.0 if sample else 1.0)
    ceiling = radius * radius * (2.0 if sample else 1.0)
    if c.high < (2.0 if sample else 1.0):
        return Interval(0.0, ceiling)
    sums = [s.low, s.high] + ([0.0] if s.low < 0 < s.high else [])
    counts = [n_low + (n_high - n_low) * i / 16 for i in range(17)]
    values = [
        variance_of(qv, sv, nv, sample)
        for qv in (max(q.low, 0.0), max(q.high, 0.0))
        for sv in sums
        for nv in counts
    ]
    top = radius * radius * (n_low / (n_low - 1) if sample else 1.0)
    return Interval(min(max(min(values), 0.0), top), min(max(max(values), 0.0), top))


def variance_of(squares: float, centred_sum: float, count: float, sample: bool) -> float:
    mean = centred_sum / count
    population = squares / count - mean * mean
    return population * count / (count - 1) if sample and count > 1 else population


@lru_cache(maxsize=4096)
def sum_of_noises_bound(terms: int, scale: float, discrete: bool, alpha: float) -> float:
    """t with P(|Z_1 + ... + Z_terms| > t) <= alpha for independent Laplace(scale) noises.

    A Chernoff bound on the exact moment-generating function M: for every λ in (0, 1/b),
    P(S > t) <= exp(terms·log M(λ) - λt), so t(λ) = (terms·log M(λ) - ln(alpha/2)) / λ works for
    each tail, and the bound is the smallest t(λ) over a fine grid. Continuous Laplace has
    M(λ) = 1 / (1 - λ²b²); discrete Laplace with r = e^{-1/b} has M(λ) = (1 - r)² / ((1 - re^λ)(1 - re^{-λ})).
    """
    b = scale
    r = math.exp(-1 / b)

    def log_mgf(lam: float) -> float:
        if discrete:
            return 2 * math.log(1 - r) - math.log(1 - r * math.exp(lam)) - math.log(1 - r * math.exp(-lam))
        return -math.log(1 - lam * lam * b * b)

    target = math.log(alpha / 2)
    return min((terms * log_mgf(lam) - target) / lam for lam in ((i / 500) / b for i in range(1, 500)))
