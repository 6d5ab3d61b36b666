"""Estimates of ε from releases on two neighbouring datasets (the empirical privacy audits).

`epsilon_lower_bound` is a lower confidence bound on the real ε (Clopper-Pearson, Bonferroni over
thresholds and directions, overall level `alpha`): it exceeds the declared ε only if the mechanism
is broken, not by chance. With a δ, the bound is on ε of P_a ≤ e^ε P_b + δ.
"""

from __future__ import annotations

import math

from scipy.stats import beta

ALPHA = 1e-4


def epsilon_lower_bound(a: list[float], b: list[float], alpha: float = ALPHA, delta: float = 0.0) -> float:
    """max over t and direction of log(lower(P_a[x ≥ t]) / upper(P_b[x ≥ t])), at overall level ALPHA."""
    thresholds = sorted(set(a) | set(b))[:: max(1, len(set(a) | set(b)) // 40)]
    tests = 4 * len(thresholds)
    level = alpha / tests
    best = 0.0
    for t in thresholds:
        for first, second in ((a, b), (b, a)):
            for side in (1, -1):
                hits_first = sum(1 for x in first if side * x >= side * t)
                hits_second = sum(1 for x in second if side * x >= side * t)
                low = beta.ppf(level, hits_first, len(first) - hits_first + 1) if hits_first else 0.0
                high = beta.ppf(1 - level, hits_second + 1, len(second) - hits_second)
                if low - delta > 0 and high > 0:
                    best = max(best, math.log((low - delta) / high))
    return best


def point_estimate(a: list[float], b: list[float]) -> float:
    """The largest log(P_a[x ≥ t] / P_b[x ≥ t]) over thresholds hit by at least 50 releases of b."""
    best = 0.0
    for t in sorted(set(a)):
        hits_a = sum(1 for x in a if x >= t)
        hits_b = sum(1 for x in b if x >= t)
        if hits_b >= 50:
            best = max(best, math.log(hits_a / hits_b))
    return best
