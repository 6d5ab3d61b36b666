"""The ε the ledger records on an (ε, δ) dataset is never below an independent exact accounting of
the noise that was drawn.

The test counts the draws itself from each query's shape and the mechanism EXPLAIN names (one draw
per measure: the group-size count, each COUNT/SUM, AVG's sum and count, each quantile's histogram),
with sensitivities it derives from the policy (each person is one row here), and composes them with
dp-accounting's PLD at a ten times finer grid than the ledger's. The ledger must not be below that
figure by more than the rounding of the noise scales EXPLAIN prints (3 significant digits).
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Callable

import psycopg
from dp_accounting.pld import privacy_loss_distribution as pld

from tests.proxy_process import ProxyProcess

DELTA = 1e-6
APPROX = {
    "budget.epsilon": 200.0,
    "budget.delta": DELTA,
    "query.mechanism": "gaussian",
    "query.default_delta": 1e-8,
}
GRID = 1e-4
SALARY_RADIUS = (250_000 - 20_000) / 2  # AVG sums salaries centred in their policy bounds
SALARY_BOUND = 250_000
ROUNDING = 0.0005  # EXPLAIN prints scales to 3-4 significant digits

TEMPLATES = {
    "count": ("gaussian", "SELECT COUNT(*) FROM employees WHERE age > {a}"),
    "grouped": (
        "gaussian",
        "SELECT department, COUNT(*), AVG(salary) FROM employees WHERE age > {a} GROUP BY department",
    ),
    "sum": ("laplace", "SELECT SUM(salary) FROM employees WHERE age > {a}"),
    "quantiles": (
        "laplace",
        "SELECT "
        + ", ".join(f"PERCENTILE_CONT(0.{i}) WITHIN GROUP (ORDER BY salary) AS m" for i in range(1, 9))
        + " FROM employees WHERE age > {a}",
    ),
}
_SCALE = re.compile(r"scale ([0-9.e+]+)")


def _draws(explain: list[str], mechanism: str) -> list[pld.PrivacyLossDistribution]:
    """One privacy loss distribution per noise draw a unit can move, read off an EXPLAIN."""
    out = []
    for line in explain:
        if line.strip().startswith("group size (") or "= COUNT:" in line:
            out.append(_one(line, 1.0))
        elif "= SUM:" in line:
            out.append(_one(line, SALARY_BOUND))
        elif "= AVG:" in line:
            sum_scale, count_scale = (float(s) for s in _SCALE.findall(line))
            out.append(_from(mechanism, sum_scale, SALARY_RADIUS))
            out.append(_from(f"discrete_{mechanism}", count_scale, 1.0))
        elif "PERCENTILE" in line:
            out.append(_one(line, 1.0))  # a person adds one row to one bin of the histogram
    return out


def _one(line: str, sensitivity: float) -> pld.PrivacyLossDistribution:
    scale = float(_SCALE.findall(line)[-1])
    if "discrete Gaussian" in line:
        return _from("discrete_gaussian", scale, sensitivity)
    if "Gaussian" in line:
        return _from("gaussian", scale, sensitivity)
    if "discrete Laplace" in line:
        return _from("discrete_laplace", scale, sensitivity)
    return _from("laplace", scale, sensitivity)


def _from(kind: str, scale: float, sensitivity: float) -> pld.PrivacyLossDistribution:
    scale *= 1 - ROUNDING  # the printed scale may be rounded up: take the noisier-looking side
    if kind == "gaussian":
        return pld.from_gaussian_mechanism(scale, sensitivity, value_discretization_interval=GRID)
    if kind == "discrete_gaussian":
        return pld.from_discrete_gaussian_mechanism(
            scale, int(sensitivity), value_discretization_interval=GRID
        )
    if kind == "discrete_laplace":
        return pld.from_discrete_laplace_mechanism(
            1 / scale, int(sensitivity), value_discretization_interval=GRID
        )
    return pld.from_laplace_mechanism(scale, sensitivity, value_discretization_interval=GRID)


def _exact_epsilon(draws: list[pld.PrivacyLossDistribution]) -> float:
    composed = draws[0]
    for draw in draws[1:]:
        composed = composed.compose(draw)
    return float(composed.get_epsilon_for_delta(DELTA))


def _spent(proxy: ProxyProcess, user: str) -> float:
    with sqlite3.connect(proxy.ledger) as db:
        row = db.execute("SELECT spent_micro FROM accounts WHERE user_name = ?", (user,)).fetchone()
    return row[0] / 1e6


def _ask(conn: psycopg.Connection, template: str, age: int) -> list[pld.PrivacyLossDistribution]:
    mechanism, sql = TEMPLATES[template]
    conn.execute(f"SET dp.mechanism = {mechanism}")
    query = sql.format(a=age)
    explain = [r[0] for r in conn.execute(f"EXPLAIN {query}")]
    conn.execute(query).fetchall()
    return _draws(explain, mechanism)


def test_eight_quantiles_with_one_alias_are_nine_draws(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**APPROX)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        draws = _ask(conn, "quantiles", 21)
    assert len(draws) == 9
    exact = _exact_epsilon(draws)
    recorded = _spent(proxy, "analyst")
    assert recorded >= exact * (1 - 0.01), (recorded, exact)
    assert recorded <= exact * 1.05 + 0.01  # and not wildly pessimistic either


def test_the_ledger_is_never_below_exact_accounting(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**APPROX)
    rng = random.Random(20261203)  # picks the query mix, not noise
    draws: list[pld.PrivacyLossDistribution] = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for age in rng.sample(range(18, 70), 16):  # every question is new: each one draws noise
            template = rng.choice(sorted(TEMPLATES))
            draws += _ask(conn, template, age)
            exact = _exact_epsilon(draws)
            recorded = _spent(proxy, "analyst")
            assert recorded >= exact * (1 - 0.01), (template, recorded, exact)
    assert recorded <= exact * 1.05 + 0.05
