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


def test_parameters_flipped_comparisons_and_literals_are_one_question(
    proxy_factory: Callable[..., ProxyProcess],
) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 5.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        literal = conn.execute(
            "SELECT COUNT(*), AVG(salary) FROM employees WHERE age > 30 AND department = 'Sales'"
        ).fetchone()
        flipped = conn.execute(
            "SELECT COUNT(*), AVG(salary) FROM employees WHERE 30 < age AND 'Sales' = department"
        ).fetchone()
        bound = conn.execute(  # psycopg binds $1, $2 in the extended protocol
            "SELECT COUNT(*), AVG(salary) FROM employees WHERE age > %s AND department = %s", [30, "Sales"]
        ).fetchone()
        prepared = conn.execute(
            "SELECT count(*), avg(salary) FROM employees WHERE department = %s AND age > %s",
            ["Sales", 30],
            prepare=True,
        ).fetchone()
        other = conn.execute(
            "SELECT COUNT(*), AVG(salary) FROM employees WHERE age > %s AND department = %s", [31, "Sales"]
        ).fetchone()
    assert literal == flipped == bound == prepared
    assert other != literal
    assert debits(proxy) == [500_000, 500_000]


def test_editing_other_parts_of_the_policy_keeps_cached_answers(tmp_path, data_file) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import signal
    import time

    import yaml

    from tests.proxy_process import start_proxy, write_policy

    path = write_policy(tmp_path, data_file, **{"budget.epsilon": 5.0})
    proxy = start_proxy(path, tmp_path)
    query = "SELECT department, COUNT(*) FROM employees WHERE age >= 40 GROUP BY 1"
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            first = canonical(conn.execute(query).fetchall())  # type: ignore[arg-type]
        policy = yaml.safe_load(path.read_text())
        employees, visits = policy["datasets"]["employees"], policy["datasets"]["visits"]
        edits = [
            lambda: visits["query"].update(default_epsilon=0.25),  # another dataset
            lambda: employees.update(description="Edited by an admin."),  # a description
            lambda: employees["budget"].update(epsilon=6.0),  # this dataset's budget
            lambda: employees.setdefault("detectors", {}).update(hold_seconds=60.0),  # a detector
            lambda: policy["users"].pop("admin"),  # a user
        ]

        def reload(text: str) -> None:
            path.write_text(text)
            version = f"version {hashlib.sha256(text.encode()).hexdigest()[:16]}"
            proxy.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while version not in proxy.log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert version in proxy.log.read_text()

        for number, edit in enumerate(edits):
            edit()
            reload(f"# edit {number}\n" + yaml.safe_dump(policy))
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                assert canonical(conn.execute(query).fetchall()) == first  # type: ignore[arg-type]
        assert len(debits(proxy)) == 1
        employees["suppression"]["min_group_size"] = 5  # changes this dataset's answers
        reload(yaml.safe_dump(policy))
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute(query).fetchall()
        assert len(debits(proxy)) == 2
    finally:
        proxy.stop()
