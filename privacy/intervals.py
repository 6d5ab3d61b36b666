"""Confidence intervals computed from released values and noise parameters only (post-processing).

They describe the noise we added, not sampling error: "the true value of this aggregate over the
data, after clipping, lies in the interval with probability at least `confidence`".
"""

from __future__ import annotations

from dataclasses import dataclass

from privacy.mechanisms import Laplace


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def additive(released: float, mechanism: Laplace, confidence: float) -> Interval:
    """Interval for value + noise: exact coverage for Laplace, at least `confidence` for discrete Laplace."""
    k = mechanism.half_width(1 - confidence)
    return Interval(released - k, released + k)


def ratio_of_centred_sum(
    noisy_centred_sum: float,
    sum_mechanism: Laplace,
    noisy_count: float,
    count_mechanism: Laplace,
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
