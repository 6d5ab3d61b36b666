"""psql's meta-commands, answered from policy metadata at zero budget."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from tests.proxy_process import ProxyProcess
from tests.test_psql import psql

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")


def spent(proxy: ProxyProcess) -> int:
    with sqlite3.connect(proxy.ledger) as db:
        return int(db.execute("SELECT COALESCE(SUM(spent_micro), 0) FROM accounts").fetchone()[0])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("\\dt", "public|employees|table|privacylens"),
        ("\\d employees", "salary|double precision|||"),
        ("\\d employees", "hire_date|date|||"),
        ("\\d+ employees", "user_id|bigint||||plain|||The privacy unit. Never released, never grouped."),
        ("\\dt+", "Synthetic employee records (one row per employee)."),
        ("\\l", "demo|privacylens|UTF8|C|C"),
        ("\\dn", "public|privacylens"),
        ("\\du", "privacylens"),
        ("\\df", "Schema|Name|Result data type|Argument data types|Type"),
        ("\\conninfo", 'You are connected to database "demo" as user "analyst"'),
    ],
)
def test_meta_command(proxy: ProxyProcess, command: str, expected: str) -> None:
    before = spent(proxy)
    out = psql(proxy, command)
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert expected in out.stdout
    assert spent(proxy) == before


def test_catalog_never_reveals_row_counts_or_sizes(proxy: ProxyProcess) -> None:
    out = psql(
        proxy,
        "SELECT reltuples, relpages, pg_relation_size(oid), pg_total_relation_size(oid) "
        "FROM pg_catalog.pg_class WHERE relname = 'employees'",
    )
    assert out.stdout.splitlines()[1] == "-1|0|0|0"


def test_catalog_queries_cannot_reach_data(proxy: ProxyProcess) -> None:
    """Mixing a dataset into a catalog query sends it down the DP path, which refuses it."""
    out = psql(proxy, "SELECT c.relname, e.salary FROM pg_catalog.pg_class c, employees e")
    assert "ERROR:" in out.stderr and "joins are not supported" in out.stderr
    denied = psql(proxy, "SELECT * FROM duckdb_settings()")
    assert "ERROR:" in denied.stderr


def test_show_any_setting_and_catalog_functions(proxy: ProxyProcess) -> None:
    out = psql(
        proxy,
        "SHOW max_connections",
        "SHOW lc_messages",
        "SHOW ALL",
        "SELECT parse_ident('public.employees'), format_type(1043, 36), pg_get_userbyid(10), "
        "has_table_privilege('employees', 'SELECT'), current_schemas(false), to_regtype('int4')",
        "SELECT count(*) > 20 FROM pg_settings",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "100" in lines and "C" in lines
    assert "{public,employees}|character varying|privacylens|t|{public}|23" in lines
    assert lines[-2] == "t"
    unknown = psql(proxy, "SHOW no_such_setting")
    assert 'unrecognized configuration parameter "no_such_setting"' in unknown.stderr
