"""The free helpers: correct math, and no budget spent."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from privacy.mechanisms import Laplace
from privacy.postprocess import _difference_cdf, implied_scale, interval_at
from tests.proxy_process import ProxyProcess


@pytest.mark.parametrize(("b1", "b2"), [(2.0, 2.0), (1.0, 3.0), (5.0, 0.5)])
def test_difference_cdf_matches_simulation(b1: float, b2: float) -> None:
    n = 20_000
    differences = [
        x - y for x, y in zip(Laplace(b1).release([0.0] * n), Laplace(b2).release([0.0] * n), strict=True)
    ]
    for x in (-4.0, -1.0, 0.0, 0.5, 3.0):
        empirical = sum(1 for d in differences if d < x) / n
        assert abs(empirical - _difference_cdf(x, b1, b2)) < 4 * (0.25 / n) ** 0.5  # 4 standard errors


def test_scale_is_read_back_from_an_interval() -> None:
    mechanism = Laplace(7.5)
    half = mechanism.half_width(0.05)
    assert implied_scale(100 - half, 100 + half) == pytest.approx(7.5)
    assert interval_at(10.0, 8.0, 12.0, 1.0, 4.0) == (9.5, 10.5)


def test_helpers_over_the_wire_are_free(proxy: ProxyProcess) -> None:
    with sqlite3.connect(proxy.ledger) as db:
        before = db.execute("SELECT COALESCE(SUM(spent_micro), 0) FROM accounts").fetchone()[0]
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        p, interval, samples = conn.execute(
            "SELECT dp_prob_greater(3104, 3095, 3113, 3090, 3081, 3099), "
            "dp_interval_at(3104, 3095, 3113, 0.5, 2), dp_hypothetical(68000, 65500, 70500, 5)"
        ).fetchone()
        assert 0.95 < p < 1 and interval == [3101.75, 3106.25] and len(samples) == 5
    with sqlite3.connect(proxy.ledger) as db:
        assert db.execute("SELECT COALESCE(SUM(spent_micro), 0) FROM accounts").fetchone()[0] == before
