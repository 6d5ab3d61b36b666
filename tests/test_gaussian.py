"""(ε, δ) datasets: Gaussian noise calibrated and charged by the same RDP accountant."""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors

from privacy.accounting import NoiseEvent, epsilon_of, gaussian_multiplier
from privacy.mechanisms import Gaussian
from tests.proxy_process import ProxyProcess

APPROX = {
    "budget.epsilon": 3.0,
    "budget.delta": 1e-6,
    "query.mechanism": "gaussian",
    "query.default_delta": 1e-8,
}


def connect(proxy: ProxyProcess) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(), autocommit=True)


def test_gaussian_answers_and_composition(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**APPROX)
    answered = 0
    notices: list[str] = []
    with connect(proxy) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        row = conn.execute(
            "SELECT COUNT(*), AVG(salary) FROM employees WHERE department = 'Sales'"
        ).fetchone()
        n, low, high, avg, avg_low, avg_high, suppressed = row
        assert float(n).is_integer() and low <= n <= high and avg_low <= avg <= avg_high and not suppressed
        assert "at δ 1e-06" in notices[0]
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT COUNT(*) FROM employees WHERE age > 50"))
        assert "δ 1e-08" in plan and "discrete Gaussian" in plan
        with pytest.raises(errors.ConfigurationLimitExceeded):  # 53400, after many distinct questions
            for age in range(18, 200):
                conn.execute(f"SELECT COUNT(*) FROM employees WHERE age > {age}")
                answered += 1
    # Each query is (0.5, 1e-8); basic composition would allow 6 of them within ε 3. RDP allows more.
    assert answered + 1 > 6
    with sqlite3.connect(proxy.ledger) as db:
        (spent,) = db.execute("SELECT spent_micro FROM accounts").fetchone()
    assert spent <= 3_000_000


def test_pure_datasets_refuse_gaussian(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("SET dp.mechanism = gaussian")
        with pytest.raises(errors.FeatureNotSupported) as refused:
            conn.execute("SELECT COUNT(*) FROM employees")
        assert 'dataset "employees"' in str(refused.value) and ".parquet" not in str(refused.value)
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SET dp.delta = 0.5")


def test_calibration_meets_its_target() -> None:
    for measures, epsilon, delta in ((1, 1.0, 1e-6), (3, 0.5, 1e-8), (7, 2.0, 1e-5)):
        z = gaussian_multiplier(measures, epsilon, delta)
        # calibrated by RDP, charged by PLD: never more than the target, and not much less
        achieved = epsilon_of([NoiseEvent("gaussian", z, 1.0)] * measures, delta)
        assert epsilon * 0.8 <= achieved <= epsilon * 1.0001


@pytest.mark.parametrize(("sigma", "discrete"), [(3.0, True), (40.0, True), (2.5, False), (1e4, False)])
def test_gaussian_noise_has_the_calibrated_spread(sigma: float, discrete: bool) -> None:
    noise = Gaussian(sigma, discrete).release([0.0] * 20_000)
    # relative standard error of an sd estimate of normal data ≈ 1/sqrt(2N) = 0.5%; 3% is 6 of them
    assert abs(statistics.pstdev(noise) / sigma - 1) < 0.03
    k = Gaussian(sigma, discrete).half_width(0.05)
    covered = sum(1 for z in noise[:4000] if abs(z) <= k) / 4000
    assert covered >= 0.95 - 0.015
