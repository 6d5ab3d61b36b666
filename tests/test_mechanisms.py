"""Statistical tests of the noise and intervals, drawing from the real OpenDP samplers.

OpenDP takes its randomness from the OS CSPRNG and cannot be seeded (by design), so these tests use
sample sizes and tolerances chosen so that a correct sampler fails with probability below about
1e-5 per assertion; each tolerance states how many standard errors it is.
"""

from __future__ import annotations

import math
import statistics

import pytest

from privacy import intervals
from privacy.mechanisms import Laplace

N = 20_000


@pytest.mark.parametrize("scale", [0.5, 2.0, 50.0])
def test_float_laplace_has_the_calibrated_scale(scale: float) -> None:
    noise = Laplace(scale).release([0.0] * N)
    # E|Z| = b; sd(|Z|) = b, so the mean of N draws has standard error b/sqrt(N) (0.7% of b at N=20k).
    mean_abs = statistics.fmean(abs(z) for z in noise)
    assert abs(mean_abs / scale - 1) < 0.035  # 5 standard errors
    assert abs(statistics.fmean(noise)) < 5 * math.sqrt(2) * scale / math.sqrt(N)


@pytest.mark.parametrize("scale", [1.0, 5.0, 25.0])
def test_discrete_laplace_is_integer_with_the_calibrated_spread(scale: float) -> None:
    mechanism = Laplace(scale, discrete=True)
    noise = mechanism.release([100] * N)
    assert all(float(z).is_integer() for z in noise)
    sd = statistics.pstdev(noise)
    # sd estimate of a Laplace-like law: relative standard error ≈ sqrt((kurtosis - 1) / 4N) ≈ 0.8%.
    assert abs(sd / mechanism.standard_deviation() - 1) < 0.05  # > 5 standard errors


def test_calibration_is_sensitivity_over_epsilon() -> None:
    assert Laplace.calibrate(230000, 0.25).scale == pytest.approx(920000)
    with pytest.raises(ValueError):
        Laplace.calibrate(1, 0)


@pytest.mark.parametrize(("scale", "discrete"), [(5.0, True), (0.7, True), (3.0, False), (1e4, False)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_additive_interval_coverage(scale: float, discrete: bool, confidence: float) -> None:
    mechanism = Laplace(scale, discrete)
    truth = 1000.0
    released = mechanism.release([truth] * 4000)
    covered = sum(
        1 for v in released if (ci := intervals.additive(v, mechanism, confidence)).low <= truth <= ci.high
    )
    # Exact coverage of ±k (discrete noise lands on integers, so it is at least `confidence`).
    k = mechanism.half_width(1 - confidence)
    exact = 1 - mechanism.tail(k)
    assert exact >= confidence - 1e-12
    assert abs(covered / 4000 - exact) < 0.015  # 4.4 standard errors at 95%
    if not discrete:
        assert exact == pytest.approx(confidence)


def test_discrete_half_width_is_the_smallest_that_covers() -> None:
    for scale in (0.3, 1.0, 4.0, 17.5):
        mechanism = Laplace(scale, discrete=True)
        k = mechanism.half_width(0.05)
        assert mechanism.tail(k) <= 0.05
        assert k == 0 or mechanism.tail(k - 1) > 0.05


def test_average_interval_covers_at_least_its_level() -> None:
    lower, upper = 20_000.0, 250_000.0
    midpoint = (lower + upper) / 2
    true_values = [30_000.0 + 900 * i for i in range(40)]  # a group of 40, true mean ≈ 47,550
    true_mean = statistics.fmean(true_values)
    true_centred = sum(v - midpoint for v in true_values)
    sum_mech, count_mech = Laplace(115_000 / 0.2), Laplace(1 / 0.2, discrete=True)
    sums = sum_mech.release([true_centred] * 3000)
    counts = count_mech.release([len(true_values)] * 3000)
    covered = 0
    for s, c in zip(sums, counts, strict=True):
        ci = intervals.ratio_of_centred_sum(s, sum_mech, c, count_mech, midpoint, lower, upper, 0.95)
        assert lower <= ci.low <= ci.high <= upper
        covered += ci.low <= true_mean <= ci.high
    assert covered / 3000 >= 0.95 - 0.015  # conservative by construction (Bonferroni)


@pytest.mark.parametrize("sample", [True, False])
def test_variance_interval_covers_at_least_its_level(sample: bool) -> None:
    lower, upper = 18.0, 70.0
    midpoint, radius = (lower + upper) / 2, (upper - lower) / 2
    values = [20 + (i * 7919) % 50 for i in range(400)]  # a fixed group of 400
    n = len(values)
    mean = statistics.fmean(values)
    truth = sum((v - mean) ** 2 for v in values) / (n - 1 if sample else n)
    q_true = sum((v - midpoint) ** 2 for v in values)
    s_true = sum(v - midpoint for v in values)
    epsilon = 0.3
    q_mech = Laplace(radius * radius / epsilon)
    s_mech = Laplace(radius / epsilon)
    c_mech = Laplace(1 / epsilon, discrete=True)
    draws = 2000
    qs, ss, cs = (
        q_mech.release([q_true] * draws),
        s_mech.release([s_true] * draws),
        c_mech.release([n] * draws),
    )
    covered = 0
    for q, s, c in zip(qs, ss, cs, strict=True):
        ci = intervals.variance(q, q_mech, s, s_mech, c, c_mech, radius, sample, 0.95)
        covered += ci.low <= truth <= ci.high
    assert covered / draws >= 0.95 - 0.02  # conservative by construction; 0.02 is 4 standard errors


@pytest.mark.parametrize(("terms", "scale", "discrete"), [(1, 2.0, True), (16, 2.86, True), (64, 1.5, False)])
def test_sum_of_noises_bound_holds(terms: int, scale: float, discrete: bool) -> None:
    alpha = 0.05
    t = intervals.sum_of_noises_bound(terms, scale, discrete, alpha)
    draws = 3000
    noise = Laplace(scale, discrete).release([0.0] * (terms * draws))
    sums = [sum(noise[i * terms : (i + 1) * terms]) for i in range(draws)]
    assert sum(1 for s in sums if abs(s) > t) / draws <= alpha + 0.015  # a Chernoff bound: conservative


def test_quantile_interval_covers_the_true_median() -> None:
    from answers.release import _release_quantile
    from rewriter.plan import Aggregate, Measure
    from rewriter.rules.clip_values import QUANTILE_BINS, quantile_edges

    lower, upper = 18.0, 70.0
    ages = [18 + (i * 37) % 53 for i in range(900)]
    truth = statistics.median(ages)
    edges = quantile_edges(lower, upper)
    counts = [
        sum(1 for a in ages if edges[j] <= a < edges[j + 1] or (j == QUANTILE_BINS - 1 and a == upper))
        for j in range(QUANTILE_BINS)
    ]
    measures = tuple(Measure(f"b{j}", 1.0, 0.5, True, vector="m") for j in range(QUANTILE_BINS))
    aggregate = Aggregate("m", "quantile", measures, "float8", lower, upper, 0.5)
    mechanism = Laplace(2.0, discrete=True)
    draws, covered, errors = 300, 0, []
    for _ in range(draws):
        noisy = {m.engine_column: (mechanism.release([c])[0]) for m, c in zip(measures, counts, strict=True)}
        ((value, low, high),) = _release_quantile(
            aggregate, lambda name, noisy=noisy: ([noisy[name]], mechanism), 0.95
        )
        covered += low <= truth <= high
        errors.append(abs(value - truth))
    assert covered / draws >= 0.95 - 0.04  # 4 standard errors at n = 300; conservative by construction
    assert statistics.median(errors) < (upper - lower) / QUANTILE_BINS * 2  # within about two bins


def test_quantile_is_not_pulled_towards_the_empty_side_at_low_epsilon() -> None:
    """Clamping negative noisy bins to 0 moved MEDIAN up by ~6,900 here (salaries in 40k-80k, bounds
    0-250k, noise scale 20 per bin: ε 0.1); the noisy counts used as drawn leave ~100 (a bin's shape)."""
    from answers.release import _release_quantile
    from rewriter.plan import Aggregate, Measure
    from rewriter.rules.clip_values import QUANTILE_BINS, quantile_edges

    lower, upper = 0.0, 250_000.0
    salaries = [40_000 + (i * 7919) % 40_000 for i in range(1000)]
    truth = statistics.median(salaries)
    edges = quantile_edges(lower, upper)
    counts = [sum(1 for s in salaries if edges[j] <= s < edges[j + 1]) for j in range(QUANTILE_BINS)]
    measures = tuple(Measure(f"b{j}", 1.0, 20.0, True, vector="m") for j in range(QUANTILE_BINS))
    aggregate = Aggregate("m", "quantile", measures, "float8", lower, upper, 0.5)
    mechanism = Laplace(20.0, discrete=True)
    estimates = []
    for _ in range(600):
        noisy = dict(zip((m.engine_column for m in measures), mechanism.release(counts), strict=True))
        ((value, _, _),) = _release_quantile(
            aggregate, lambda name, noisy=noisy: ([noisy[name]], mechanism), 0.95
        )
        estimates.append(value)
    bias = statistics.fmean(estimates) - truth
    spread = statistics.stdev(estimates) / math.sqrt(len(estimates))
    assert abs(bias) < 1_500, (bias, spread)  # ~8 standard errors; the clamped estimator was ~6,900 off
