"""The same accepted plans give identical exact (pre-noise) aggregates on DuckDB and on PostgreSQL.

The demo employees data is loaded into a real PostgreSQL 15 table under another name (the policy's
`table:` maps it); each golden query is planned once and run on both engines.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml

from engines.duckdb_engine import DuckDBEngine
from engines.postgres_engine import PostgresEngine
from engines.running import Limits, RunningQuery
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import Policy, load_policy
from tests.postgres_server import PostgresServer
from tests.proxy_process import DEMO_POLICY, start_proxy

QUERIES = [
    "SELECT COUNT(*) FROM employees",
    "SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department",
    "SELECT department, SUM(salary), VARIANCE(salary), STDDEV(age) FROM employees WHERE age > 30 GROUP BY 1",
    "SELECT COUNT(*) FROM employees WHERE department IN ('Sales', 'Legal') AND hire_date >= '2015-01-01'",
    "SELECT date_trunc('year', hire_date) AS y, COUNT(*) FROM employees GROUP BY 1",
    "SELECT width_bucket(salary, 0, 200000, 8) AS b, COUNT(*), AVG(age) FROM employees GROUP BY 1",
    "SELECT MEDIAN(salary), PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY age) FROM employees",
    "SELECT CASE WHEN age < 40 THEN 'young' ELSE 'older' END AS band, COUNT(*) FROM employees GROUP BY 1",
    "SELECT COUNT(DISTINCT user_id) FROM employees WHERE salary BETWEEN 50000 AND 90000",
    "SELECT department, COUNT(*) FROM employees WHERE NOT (department = 'Board') AND age <> 44 GROUP BY 1",
]


@pytest.fixture(scope="module")
def engines(postgres: PostgresServer, data_file: Path, tmp_path_factory: pytest.TempPathFactory):
    url = postgres.create_database("equivalence")
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT user_id, department, salary, age, hire_date FROM read_parquet(?)", [str(data_file)]
        ).fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA hr")
        conn.execute(
            "CREATE TABLE hr.staff (user_id bigint, department text, salary double precision, "
            "age integer, hire_date date)"
        )
        with conn.cursor().copy("COPY hr.staff FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("ANALYZE hr.staff")
    policy_yaml = yaml.safe_load(DEMO_POLICY.read_text())
    duck_spec = {**policy_yaml["datasets"]["employees"], "source": str(data_file)}
    pg_spec = {**duck_spec, "engine": "postgres", "dsn": url, "table": "hr.staff"}
    pg_spec.pop("source")
    directory = tmp_path_factory.mktemp("equivalence")
    duck_file, pg_file = directory / "duck.yaml", directory / "pg.yaml"
    duck_file.write_text(yaml.safe_dump({"datasets": {"employees": duck_spec}}))
    pg_file.write_text(yaml.safe_dump({"datasets": {"employees": pg_spec}}))
    duck_policy, pg_policy = load_policy(duck_file), load_policy(pg_file)
    duck = DuckDBEngine(duck_policy, "equivalence-secret")
    pg = PostgresEngine(pg_policy, "equivalence-secret", url)
    pg.add("employees")
    yield duck_policy, duck, pg, pg_file
    duck.close()
    pg.close()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)
        )
    return a == b


@pytest.mark.parametrize("sql", QUERIES)
def test_duckdb_and_postgresql_agree_exactly(
    engines: tuple[Policy, DuckDBEngine, PostgresEngine, Path], sql: str
) -> None:
    policy, duck, pg, _ = engines
    assert duck.unique_units == pg.unique_units == {"employees"}
    (statement,) = split_statements(sql)
    assert statement.tree is not None
    plan = plan_query(
        statement.tree, RewriteContext(policy, "analyst", "analyst", unique_units=duck.unique_units)
    )
    d_cols, d_rows = asyncio.run(duck.run(plan, [], RunningQuery(), Limits(timeout_seconds=30)))
    p_cols, p_rows = asyncio.run(pg.run(plan, [], RunningQuery(), Limits(timeout_seconds=30)))
    assert d_cols == p_cols
    key = lambda row: tuple((v is None, str(v)) for v in row[: len(plan.keys)])  # noqa: E731
    d_rows, p_rows = sorted(d_rows, key=key), sorted(p_rows, key=key)
    assert len(d_rows) == len(p_rows) > 0
    for d, p in zip(d_rows, p_rows, strict=True):
        assert all(_same(a, b) for a, b in zip(d, p, strict=True)), (d, p)


def test_a_postgresql_dataset_over_the_wire(
    engines: tuple[Policy, DuckDBEngine, PostgresEngine, Path], tmp_path: Path
) -> None:
    """A proxy whose dataset lives in PostgreSQL answers, charges and explains like any other."""
    *_, pg_file = engines
    policy = yaml.safe_load(pg_file.read_text())
    policy["users"] = yaml.safe_load(DEMO_POLICY.read_text())["users"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    proxy = start_proxy(path, tmp_path)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            rows = conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department").fetchall()
            assert len(rows) == 10 and any("ε spent" in n for n in notices)
            plan = "\n".join(
                r[0] for r in conn.execute("EXPLAIN SELECT COUNT(*) FROM employees WHERE age > 30")
            )
            assert "engine SQL on postgres" in plan and "hr.staff" in plan
    finally:
        proxy.stop()
