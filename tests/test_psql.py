"""The README's promise, through the real psql client."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.proxy_process import ProxyProcess

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")


def psql(
    proxy: ProxyProcess, *commands: str, user: str = "analyst", password: str = "demo"
) -> subprocess.CompletedProcess[str]:
    args = ["psql", f"postgresql://{user}@127.0.0.1:{proxy.port}/demo", "-X", "-A", "-F", "|"]
    for command in commands:
        args += ["-c", command]
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def test_grouped_aggregate_has_intervals_and_suppresses_the_small_group(proxy: ProxyProcess) -> None:
    # At ε = 2 the 3-person Board passes the noisy threshold with probability ~5e-8 (at the default
    # ε = 0.5 it is ~0.9%: fine for a demo, too often for a test).
    out = psql(
        proxy,
        "SET dp.epsilon = 2",
        "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()[1:]  # after the SET command tag
    assert (
        lines[0]
        == "department|n|n_ci_low|n_ci_high|avg_salary|avg_salary_ci_low|avg_salary_ci_high|suppressed"
    )
    rows = {line.split("|")[0]: line.split("|") for line in lines[1:-1]}
    assert len(rows) == 10 and lines[-1] == "(10 rows)"
    board = rows["Board"]
    assert board[1:7] == ["", "", "", "", "", ""] and board[7] == "t"
    engineering = rows["Engineering"]
    n, low, high = (int(v) for v in engineering[1:4])
    assert low <= n <= high and engineering[7] == "f"
    assert abs(n - 4200) < 100
    assert 'NOTICE:  ε spent 2.00 of 100000.00 on dataset "employees"' in out.stderr


def test_refusals_carry_a_hint_and_the_session_continues(proxy: ProxyProcess) -> None:
    out = psql(proxy, "SELECT * FROM employees", "SELECT 1 AS still_here")
    assert "ERROR:  SELECT * would return individual rows" in out.stderr
    assert "HINT:" in out.stderr
    assert "still_here\n1" in out.stdout


def test_syntax_error_and_wrong_password(proxy: ProxyProcess) -> None:
    out = psql(proxy, "SELEC department FROM employees")
    assert "ERROR:  syntax error" in out.stderr
    bad = psql(proxy, "SELECT 1", password="wrong")
    assert bad.returncode != 0
    assert 'password authentication failed for user "analyst"' in bad.stderr
    unknown = psql(proxy, "SELECT 1", user="mallory")
    assert 'password authentication failed for user "mallory"' in unknown.stderr


def test_housekeeping_is_free_and_answered(proxy: ProxyProcess) -> None:
    out = psql(
        proxy, "SELECT version()", "SHOW server_version", "SET application_name = 'x'", "BEGIN", "COMMIT"
    )
    assert out.returncode == 0, out.stderr
    assert "PostgreSQL 15.0" in out.stdout and "NOTICE" not in out.stderr
