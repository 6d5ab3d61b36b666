"""EXPLAIN is free and tells the truth about cost, precision and suppression."""

from __future__ import annotations

import math
import sqlite3

import psycopg
import pytest
from psycopg import errors

from privacy.mechanisms import Laplace
from tests.proxy_process import ProxyProcess

QUERY = (
    "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees "
    "WHERE age > 40 GROUP BY department"
)


def spent(proxy: ProxyProcess) -> int:
    with sqlite3.connect(proxy.ledger) as db:
        return int(db.execute("SELECT COALESCE(SUM(spent_micro), 0) FROM accounts").fetchone()[0])


def test_explain_is_free_and_reports_the_split(proxy: ProxyProcess) -> None:
    before = spent(proxy)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET dp.epsilon = 0.4")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + QUERY).fetchall())
        assert spent(proxy) == before
        assert "ε 0.4 for this query" in plan and "already answered" not in plan
        assert "group size (suppressed below 30): ε 0.12" in plan  # 0.3 of ε for the threshold
        assert "n = COUNT: ε 0.14, sensitivity 1" in plan  # the rest split over two aggregates
        assert "avg_salary = AVG: ε 0.14 = 0.07 for a centred sum" in plan
        assert "clipped to [20000, 250000]" in plan and "WHERE" in plan
        conn.execute(QUERY)
        again = "\n".join(row[0] for row in conn.execute("EXPLAIN " + QUERY).fetchall())
        assert "already answered: running it again costs nothing" in again
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("EXPLAIN ANALYZE " + QUERY)
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("EXPLAIN SELECT * FROM employees")


def test_explained_interval_matches_what_is_released(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        plan = [
            r[0] for r in conn.execute("EXPLAIN SELECT COUNT(*) FROM employees WHERE age < 30").fetchall()
        ]
        width = float(next(line for line in plan if "count = COUNT" in line).rsplit("±", 1)[1])
        n, low, high, _ = conn.execute("SELECT COUNT(*) FROM employees WHERE age < 30").fetchone()
        assert n - low == width and high - n == width


@pytest.mark.parametrize("scale", [0.5, 3.0, 13.3])
def test_discrete_noise_cdf_matches_its_mass_function(scale: float) -> None:
    mechanism = Laplace(scale, discrete=True)
    weights = {z: math.exp(-abs(z) / scale) for z in range(-400, 401)}
    total = sum(weights.values())
    for t in (-7, -1, 0, 1, 2.5, 9):
        brute = sum(w for z, w in weights.items() if z < t) / total
        assert mechanism.below(t) == pytest.approx(brute, rel=1e-9, abs=1e-12)


def test_target_interval_width_picks_the_smallest_epsilon(proxy: ProxyProcess) -> None:
    notices: list[str] = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SET dp.target_ci_width = 20")
        n, low, high, _ = conn.execute(
            "SELECT COUNT(*) FROM employees WHERE age BETWEEN 30 AND 39"
        ).fetchone()
        assert high - low <= 20
        chosen = float(notices[-1].split("ε spent ")[1].split(" ")[0])
        conn.execute("SET dp.target_ci_width = 16")  # narrower asks for more ε
        conn.execute("SELECT COUNT(*) FROM employees WHERE age BETWEEN 40 AND 49")
        assert float(notices[-1].split("ε spent ")[1].split(" ")[0]) > chosen
        conn.execute("SET dp.target_ci_width = 1")
        with pytest.raises(errors.FeatureNotSupported) as raised:
            conn.execute("SELECT COUNT(*) FROM employees")
        assert "needs more ε" in str(raised.value)
