"""Scripted attacks raise their alerts, with the right queries in privacylens.attack_replay; honest
workloads raise none; the policy's actions (throttle, refuse) hold the accounts involved."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.proxy_process import ROOT, ProxyProcess

BIG_BUDGET = {"budget.epsilon": 100000.0, "visits:budget.epsilon": 100000.0}


def alerts(proxy: ProxyProcess) -> list[tuple]:
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        return conn.execute(
            "SELECT id, kind, users, across_accounts, action, active, queries "
            "FROM privacylens.alerts ORDER BY id"
        ).fetchall()


def replay(proxy: ProxyProcess, alert_id: int) -> list[tuple]:
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        return conn.execute(
            "SELECT step, heuristic, user_name, statement, epsilon, released IS NOT NULL, withheld "
            "FROM privacylens.attack_replay WHERE alert_id = %s ORDER BY step",
            (alert_id,),
        ).fetchall()


def ask(proxy: ProxyProcess, *queries: str, user: str = "analyst", epsilon: float | None = 2.0) -> None:
    """At ε 2 a one-person difference is missed with probability < 1e-4 (noise > max_units + 3 sd)."""
    with psycopg.connect(proxy.dsn(user), autocommit=True) as conn:
        if epsilon is not None:
            conn.execute(f"SET dp.epsilon = {epsilon}")
        for query in queries:
            conn.execute(query)


WIDE = "SELECT COUNT(*), SUM(salary) FROM employees WHERE department = 'Engineering'"
NARROW = (
    "SELECT COUNT(*), SUM(salary) FROM employees WHERE department = 'Engineering' AND salary <> 123456.78"
)


def test_differencing_attack_is_flagged_with_both_queries(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**BIG_BUDGET)
    ask(proxy, WIDE, NARROW)
    (alert,) = alerts(proxy)
    assert alert[1:] == (alert[1], "analyst", False, "flag", False, 2) and alert[1] == "differencing"
    steps = replay(proxy, alert[0])
    assert [s[3] for s in steps] == [WIDE, NARROW]
    assert all(s[1] == "differencing" and s[5] for s in steps)  # what the analyst received is shown


def test_differencing_split_across_accounts(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**BIG_BUDGET)
    ask(proxy, WIDE, user="analyst")
    ask(proxy, NARROW.replace("123456.78", "98765.43"), user="analyst2")
    (alert,) = alerts(proxy)
    assert alert[1:4] == ("differencing", "analyst, analyst2", True)
    assert [s[2] for s in replay(proxy, alert[0])] == ["analyst", "analyst2"]


def test_drill_down_into_a_group_is_not_differencing(proxy_factory: Callable[..., ProxyProcess]) -> None:
    """A filter on the grouped column removes whole groups: both answers release those anyway."""
    proxy = proxy_factory(**BIG_BUDGET)
    ask(
        proxy,
        "SELECT department, COUNT(*) FROM employees GROUP BY department",
        "SELECT department, COUNT(*) FROM employees WHERE department = 'Sales' GROUP BY department",
        "SELECT COUNT(*) FROM employees WHERE department = 'Sales'",
        "SELECT COUNT(*) FROM employees WHERE department = 'Sales' AND age >= 40",
    )
    assert alerts(proxy) == []


AVERAGING = [  # rewordings and other ε values defeat the answer cache, not the detector
    (0.5, "SELECT COUNT(*) FROM employees WHERE department = 'Legal'"),
    (0.6, "SELECT COUNT(*) FROM employees WHERE 'Legal' = department"),
    (0.7, "SELECT count(*) FROM employees WHERE department IN ('Legal') AND salary >= 0"),
    (0.8, "SELECT COUNT(*), AVG(age) FROM employees WHERE department = 'Legal'"),
    (0.9, "SELECT COUNT(*) FROM employees e WHERE e.department = 'Legal' AND age < 500"),
    (1.0, "SELECT COUNT(*) FROM employees WHERE NOT department <> 'Legal'"),
]


def test_averaging_attack_is_flagged_with_every_repeat(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**BIG_BUDGET, **{"detectors.averaging.max_repeats": 5})
    for epsilon, query in AVERAGING[:5]:
        ask(proxy, query, epsilon=epsilon)
    assert alerts(proxy) == []  # five fresh answers: at the limit, not over it
    epsilon, query = AVERAGING[5]
    ask(proxy, query, epsilon=epsilon)
    (alert,) = alerts(proxy)
    assert alert[1] == "averaging" and alert[6] == 6
    steps = replay(proxy, alert[0])
    assert [s[4] for s in steps] == [e for e, _ in AVERAGING]
    assert [s[0] for s in steps] == [1, 2, 3, 4, 5, 6]


def test_repeating_the_same_question_is_not_averaging(proxy_factory: Callable[..., ProxyProcess]) -> None:
    """Dashboards re-ask the same question: the answer cache re-serves it, which adds nothing."""
    proxy = proxy_factory(**BIG_BUDGET)
    ask(proxy, *[AVERAGING[0][1]] * 20)
    assert alerts(proxy) == []


def test_burst_is_flagged(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**BIG_BUDGET, **{"detectors.burst.max_queries": 20, "detectors.burst.seconds": 60})
    ask(proxy, *[f"SELECT COUNT(*) FROM employees WHERE age > {18 + i}" for i in range(21)])
    (alert,) = alerts(proxy)
    assert alert[1] == "burst" and alert[6] == 21
    assert [s[3] for s in replay(proxy, alert[0])][-1].endswith("age > 38")


def test_refuse_withholds_the_answer_and_holds_the_account(
    proxy_factory: Callable[..., ProxyProcess],
) -> None:
    proxy = proxy_factory(**BIG_BUDGET, **{"detectors.differencing.action": "refuse"})
    ask(proxy, WIDE)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="withheld") as raised:
            conn.execute(NARROW)
        assert "clears the alert" in (raised.value.diag.message_hint or "")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="refused after a suspected differencing"
        ):
            conn.execute("SELECT COUNT(*) FROM employees")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(WIDE)  # even an answer it already received
    ask(proxy, "SELECT COUNT(*) FROM visits")  # other datasets are not held
    ask(proxy, "SELECT COUNT(*) FROM employees", user="analyst2")  # nor other accounts
    (alert,) = alerts(proxy)
    assert alert[4:6] == ("refuse", True)
    steps = replay(proxy, alert[0])
    assert [(s[5], s[6]) for s in steps] == [(True, False), (False, True)]  # the second was withheld
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        spent = conn.execute("SELECT count(*) FROM privacylens.ledger WHERE user_name = 'analyst'").fetchone()
    assert spent == (3,)  # WIDE, NARROW (withheld, charged), visits
    cleared = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "clear-alert", str(alert[0]), "--ledger", str(proxy.ledger)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert cleared.returncode == 0, cleared.stderr
    ask(proxy, "SELECT COUNT(*) FROM employees")
    assert alerts(proxy)[0][5] is False


def test_throttle_slows_the_account_down(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(
        **BIG_BUDGET,
        **{"detectors.differencing.action": "throttle", "detectors.throttle_seconds": 1.0},
    )
    ask(proxy, WIDE, NARROW)  # the second is answered: throttling only slows what follows
    started = time.monotonic()
    ask(proxy, "SELECT COUNT(*) FROM employees WHERE age > 30")
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    ask(proxy, "SELECT COUNT(*) FROM employees WHERE age > 31", user="analyst2")
    assert time.monotonic() - started < 1.0


def honest_workload(rng: random.Random) -> list[tuple[str, float, str]]:
    """(user, ε, query): a seeded mix of the questions analysts and dashboards ask."""
    departments = ["Engineering", "Sales", "Operations", "Support", "Marketing", "Finance", "Legal"]
    templates = [
        lambda: "SELECT department, COUNT(*) FROM employees GROUP BY department",
        lambda: "SELECT department, AVG(salary) FROM employees GROUP BY department ORDER BY 2 DESC",
        lambda: f"SELECT COUNT(*), AVG(age) FROM employees WHERE department = '{rng.choice(departments)}'",
        lambda: (
            f"SELECT department, AVG(salary) FROM employees WHERE hire_date >= "
            f"'{rng.randint(2005, 2020)}-01-01' GROUP BY department"
        ),
        lambda: (
            "SELECT date_trunc('year', hire_date) AS year, COUNT(*) FROM employees "
            f"WHERE hire_date >= '{rng.randint(2005, 2015)}-01-01' GROUP BY 1 ORDER BY 1"
        ),
        lambda: (
            f"SELECT AVG(salary) FROM employees WHERE age BETWEEN {(a := rng.randint(20, 55))} AND {a + 10}"
        ),
        lambda: (
            f"SELECT department, SUM(salary) FROM employees WHERE age > {rng.randint(25, 50)} "
            "GROUP BY department"
        ),
        lambda: (
            "SELECT MEDIAN(salary) FROM employees WHERE department IN "
            f"('{rng.choice(departments)}', '{rng.choice(departments)}')"
        ),
        lambda: (
            "SELECT channel, COUNT(DISTINCT user_id) FROM visits WHERE visit_date >= "
            f"'2024-{rng.randint(1, 12):02d}-01' GROUP BY channel"
        ),
        lambda: (
            f"SELECT channel, AVG(minutes) FROM visits WHERE pages >= {rng.randint(2, 10)} GROUP BY channel"
        ),
        lambda: (
            "SELECT date_trunc('month', visit_date) AS month, COUNT(*) FROM visits "
            "WHERE visit_date >= '2024-01-01' GROUP BY 1"
        ),
    ]
    return [
        (rng.choice(["analyst", "analyst2"]), rng.choice([0.3, 0.5, 1.0]), rng.choice(templates)())
        for _ in range(200)
    ]


def test_two_hundred_honest_queries_raise_no_alert(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**BIG_BUDGET)
    workload = honest_workload(random.Random(int(os.environ.get("HONEST_SEED", "2026"))))
    connections = {
        user: psycopg.connect(proxy.dsn(user), autocommit=True) for user in ("analyst", "analyst2")
    }
    try:
        for user, epsilon, query in workload:
            connections[user].execute(f"SET dp.epsilon = {epsilon}")
            connections[user].execute(query)
    finally:
        for conn in connections.values():
            conn.close()
    assert alerts(proxy) == []
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM privacylens.queries").fetchone() == (200,)
