"""The same accepted plans give identical exact (pre-noise) aggregates on DuckDB, PostgreSQL and Spark.

The demo `employees` (one row per person) and `visits` (many rows per person, so contribution
bounding picks rows by its keyed hash) are loaded into a real PostgreSQL 15 under other names (the
policy's `table:` maps them) and read by a local Spark session from the same Parquet files; each
golden query is planned once and run on all three engines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml

from engines.base import Engine
from engines.duckdb_engine import DuckDBEngine
from engines.postgres_engine import PostgresEngine
from engines.running import Limits, RunningQuery
from pgerrors import DatatypeMismatch
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import Policy, load_policy
from tests.postgres_server import PostgresServer
from tests.proxy_process import DEMO_POLICY, start_proxy

QUERIES: list[tuple[str, Sequence[Any]]] = [
    ("SELECT COUNT(*) FROM employees", ()),
    ("SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department", ()),
    (
        "SELECT department, SUM(salary), VARIANCE(salary), STDDEV(age) FROM employees "
        "WHERE age > 30 GROUP BY 1",
        (),
    ),
    (
        "SELECT COUNT(*) FROM employees WHERE department IN ('Sales', 'Legal') AND hire_date >= '2015-01-01'",
        (),
    ),
    ("SELECT date_trunc('year', hire_date) AS y, COUNT(*) FROM employees GROUP BY 1", ()),
    ("SELECT width_bucket(salary, 0, 200000, 8) AS b, COUNT(*), AVG(age) FROM employees GROUP BY 1", ()),
    ("SELECT MEDIAN(salary), PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY age) FROM employees", ()),
    (
        "SELECT CASE WHEN age < 40 THEN 'young' ELSE 'older' END AS band, COUNT(*) FROM employees GROUP BY 1",
        (),
    ),
    ("SELECT COUNT(DISTINCT user_id) FROM employees WHERE salary BETWEEN 50000 AND 90000", ()),
    (
        "SELECT department, COUNT(*) FROM employees "
        "WHERE NOT (department = 'Board') AND age <> 44 GROUP BY 1",
        (),
    ),
    ("SELECT SUM(salary) FROM employees WHERE department = $1 AND age > $2", ("Sales", 40)),
    ("SELECT COUNT(*) FROM employees WHERE hire_date < $1", (dt.date(2012, 6, 1),)),
    # many rows per person: each keeps at most 5 rows per group and 2 groups, chosen by the row hash
    ("SELECT channel, COUNT(*), COUNT(DISTINCT user_id), AVG(minutes) FROM visits GROUP BY channel", ()),
    ("SELECT SUM(pages), AVG(minutes) FROM visits WHERE visit_date >= '2024-01-01'", ()),
    ("SELECT date_trunc('month', visit_date) AS m, COUNT(*) FROM visits GROUP BY 1", ()),
    ("SELECT channel, SUM(minutes), STDDEV(pages) FROM visits WHERE minutes > 5 GROUP BY 1", ()),
    ("SELECT width_bucket(minutes, 0, 60, 6) AS b, COUNT(*) FROM visits GROUP BY 1", ()),
    ("SELECT MEDIAN(minutes) FROM visits WHERE channel <> 'store'", ()),
    ("SELECT COUNT(*) FROM visits WHERE channel = $1", ("app",)),
    # time buckets as dashboards write them
    (
        'SELECT floor(extract(epoch from visit_date)/86400)*86400 AS "time", COUNT(*) FROM visits '
        "WHERE visit_date BETWEEN '2024-03-01T00:00:00Z' AND '2024-03-20T00:00:00Z' GROUP BY 1",
        (),
    ),
    ("SELECT EXTRACT(dow FROM hire_date) AS d, COUNT(*), AVG(salary) FROM employees GROUP BY 1", ()),
    (
        "SELECT EXTRACT(quarter FROM visit_date), EXTRACT(year FROM visit_date), COUNT(*) FROM visits "
        "GROUP BY 1, 2",
        (),
    ),
    (
        "SELECT CAST(date_trunc('week', hire_date) AS date) AS w, COUNT(*) FROM employees "
        "WHERE hire_date >= '2020-01-01' AND hire_date < '2020-06-01' GROUP BY 1",
        (),
    ),
]
TABLES = {"employees": "hr.staff", "visits": "web.visits"}
COLUMNS = {
    "employees": "user_id bigint, department text, salary double precision, age integer, hire_date date",
    "visits": "user_id bigint, visit_date date, channel text, minutes double precision, pages integer",
}
SECRET = "equivalence-secret"


def _spark_available() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


@pytest.fixture(scope="module")
def engines(postgres: PostgresServer, data_file: Path, tmp_path_factory: pytest.TempPathFactory):
    url = postgres.create_database("equivalence")
    files = {"employees": data_file, "visits": data_file.parent / "visits.parquet"}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, table in TABLES.items():
            with duckdb.connect() as con:
                rows = con.execute(f"SELECT * FROM read_parquet('{files[name]}')").fetchall()
            conn.execute(f"CREATE SCHEMA {table.split('.')[0]}")
            conn.execute(f"CREATE TABLE {table} ({COLUMNS[name]})")
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(f"ANALYZE {table}")
    demo = yaml.safe_load(DEMO_POLICY.read_text())["datasets"]
    duck = {n: {**demo[n], "source": str(files[n])} for n in TABLES}
    pg = {n: {**{k: v for k, v in duck[n].items() if k != "source"}, "engine": "postgres", "dsn": url,
              "table": TABLES[n]} for n in TABLES}  # fmt: skip
    spark = {n: {**duck[n], "engine": "spark", "master": "local[2]"} for n in TABLES}
    directory = tmp_path_factory.mktemp("equivalence")
    policies: dict[str, Path] = {}
    for kind, datasets in (("duckdb", duck), ("postgres", pg), ("spark", spark)):
        policies[kind] = directory / f"{kind}.yaml"
        policies[kind].write_text(yaml.safe_dump({"datasets": datasets}))
    opened: dict[str, Engine] = {"duckdb": DuckDBEngine(load_policy(policies["duckdb"]), SECRET)}
    pg_engine = PostgresEngine(load_policy(policies["postgres"]), SECRET, url)
    for name in TABLES:
        pg_engine.add(name)
    opened["postgres"] = pg_engine
    if _spark_available():
        from engines.spark_engine import SparkEngine

        spark_engine = SparkEngine(load_policy(policies["spark"]), SECRET, "local[2]")
        for name in TABLES:
            spark_engine.add(name)
        opened["spark"] = spark_engine
    elif os.environ.get("PRIVACYLENS_REQUIRE_CLIENTS"):
        pytest.fail("pyspark or Java is missing (make test installs pyspark)")
    yield load_policy(policies["duckdb"]), opened, policies
    for engine in opened.values():
        engine.close()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)
        )
    return a == b


@pytest.mark.parametrize(("sql", "params"), QUERIES)
def test_every_engine_gives_the_same_exact_aggregates(
    engines: tuple[Policy, dict[str, Engine], dict[str, Path]], sql: str, params: Sequence[Any]
) -> None:
    policy, opened, _ = engines
    for engine in opened.values():
        assert engine.unique_units == {"employees"}, engine.dialect
    (statement,) = split_statements(sql)
    assert statement.tree is not None
    plan = plan_query(
        statement.tree, RewriteContext(policy, "analyst", "analyst", unique_units=frozenset({"employees"}))
    )
    key = lambda row: tuple((v is None, str(v)) for v in row[: len(plan.keys)])  # noqa: E731
    results = {}
    for kind, engine in opened.items():
        asyncio.run(engine.check(plan, plan.engine_parameters(params)))  # binds: no refusal
        columns, rows = asyncio.run(
            engine.run(plan, plan.engine_parameters(params), RunningQuery(), Limits(timeout_seconds=60))
        )
        results[kind] = columns, sorted(rows, key=key)
    d_cols, d_rows = results["duckdb"]
    assert len(d_rows) > 0 and any(v not in (0, None) for row in d_rows for v in row)
    for kind, (columns, rows) in results.items():
        assert columns == d_cols, kind
        assert len(rows) == len(d_rows), kind
        for d, other in zip(d_rows, rows, strict=True):
            assert all(_same(a, b) for a, b in zip(d, other, strict=True)), (kind, d, other)


def test_every_engine_refuses_a_parameter_it_cannot_bind_without_running(
    engines: tuple[Policy, dict[str, Engine], dict[str, Path]],
) -> None:
    policy, opened, _ = engines
    (statement,) = split_statements("SELECT department, COUNT(*) FROM employees WHERE age > -$1 GROUP BY 1")
    assert statement.tree is not None
    plan = plan_query(statement.tree, RewriteContext(policy, "analyst", "analyst"))
    bound = plan.engine_parameters(["30"])  # text, as pgbench sends it
    for kind, engine in opened.items():
        if kind == "spark":  # Spark casts the text to a number: it binds, and runs
            asyncio.run(engine.check(plan, bound))
            assert asyncio.run(engine.run(plan, bound, RunningQuery(), Limits(timeout_seconds=60)))[1]
            continue
        with pytest.raises(DatatypeMismatch):
            asyncio.run(engine.check(plan, bound))


def test_a_postgresql_dataset_over_the_wire(
    engines: tuple[Policy, dict[str, Engine], dict[str, Path]], tmp_path: Path
) -> None:
    """A proxy whose dataset lives in PostgreSQL answers, charges and explains like any other."""
    policy = yaml.safe_load(engines[2]["postgres"].read_text())
    policy["users"] = yaml.safe_load(DEMO_POLICY.read_text())["users"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    proxy = start_proxy(path, tmp_path)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            assert_employees_served(conn, "postgres", "hr.staff")
    finally:
        proxy.stop()


def assert_employees_served(conn: psycopg.Connection, engine: str, table: str) -> None:
    """The `employees` dataset on `engine` is answered with an ε notice, and EXPLAIN shows the
    engine's SQL reading `table`."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    rows = conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department").fetchall()
    assert len(rows) == 10 and any("ε spent" in n for n in notices)
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT COUNT(*) FROM employees WHERE age > 30"))
    assert f"engine SQL on {engine}" in plan and table in plan
