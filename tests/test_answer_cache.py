"""The same question, however worded, costs ε once and always gets the same answer."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable

import psycopg

from tests.proxy_process import ProxyProcess

WORDINGS = [
    "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department",
    "select department, count(*), avg(salary) from employees group by department",
    "SELECT   Department ,COUNT( * ) AS total,AVG(Salary) mean FROM public.employees GROUP BY 1",
    "SELECT e.department, COUNT(*) c, AVG(e.salary) a FROM employees e GROUP BY e.department ORDER BY 2 DESC",
    'SELECT "department", count(*), avg("salary") FROM "employees" GROUP BY "department" LIMIT 5',
    "/* dashboard refresh */ SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department;",
]


def debits(proxy: ProxyProcess) -> list[int]:
    with sqlite3.connect(proxy.ledger) as db:
        return [r[0] for r in db.execute("SELECT cost_micro FROM debits")]


def canonical(rows: list[tuple]) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in rows}


def test_one_hundred_rewordings_cost_once_and_agree(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 1.0})
    rng = random.Random(7)  # picks wordings; not noise
    answers = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for _ in range(100):
            answers.append(canonical(conn.execute(rng.choice(WORDINGS)).fetchall()))  # type: ignore[arg-type]
    assert debits(proxy) == [500_000]
    full = answers[0]
    assert len(full) == 10
    for answer in answers[1:]:
        for department, values in answer.items():  # LIMIT 5 returns a subset, identical where present
            assert values == full[department]


def test_cached_answers_are_shared_and_survive_a_restart(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 1.0})
    query = "SELECT COUNT(*), SUM(salary) FROM employees WHERE hire_date >= '2015-01-01'"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        first = conn.execute(query).fetchone()
    with psycopg.connect(proxy.dsn(user="admin"), autocommit=True) as conn:
        assert conn.execute(query).fetchone() == first
    proxy.stop()  # a restart must not become a way to draw fresh noise
    restarted = proxy_factory(_args=["--ledger", str(proxy.ledger)], **{"budget.epsilon": 1.0})
    with psycopg.connect(restarted.dsn(), autocommit=True) as conn:
        assert conn.execute(query).fetchone() == first
    assert debits(proxy) == [500_000]  # the restarted proxy writes to the same ledger file


def test_a_different_epsilon_or_confidence(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 5.0})
    query = "SELECT COUNT(*) FROM employees WHERE department = 'Sales'"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        at_95 = conn.execute(query).fetchone()
        conn.execute("SET dp.confidence = 0.5")
        at_50 = conn.execute(query).fetchone()  # same answer, narrower interval: post-processing
        assert at_50[0] == at_95[0] and at_95[1] < at_50[1] <= at_50[2] < at_95[2]
        conn.execute("SET dp.epsilon = 1")
        conn.execute(query)  # a new question: a new ε
    assert debits(proxy) == [500_000, 1_000_000]
