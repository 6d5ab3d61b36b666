"""Adding one person, however many rows they have and wherever they are, moves each measure of any
query by at most its declared sensitivity (L1 over all released groups). Checked on the engine's
true, un-noised measures, so the test is exact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from answers.release import groups_of
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.plan import Plan
from rewriter.policy import load_policy

POLICY = load_policy(Path(__file__).parent.parent / "policies" / "demo.yaml")
QUERIES = [
    "SELECT channel, COUNT(*), COUNT(DISTINCT user_id), SUM(pages), AVG(minutes) FROM visits GROUP BY 1",
    "SELECT date_trunc('quarter', visit_date), COUNT(*), SUM(minutes) FROM visits GROUP BY 1",
    "SELECT channel, date_trunc('year', visit_date), COUNT(*), AVG(pages) FROM visits GROUP BY 1, 2",
    "SELECT COUNT(*), SUM(minutes), AVG(pages), COUNT(DISTINCT user_id) FROM visits WHERE channel <> 'store'",
]
NEW_USER = 987654321

rows = st.lists(
    st.tuples(
        st.sampled_from(["web", "app", "email", "store", "elsewhere"]),
        st.dates(min_value=dt.date(2022, 6, 1), max_value=dt.date(2025, 6, 1)),
        st.floats(min_value=-50, max_value=10_000, allow_nan=False),
        st.integers(min_value=-5, max_value=10_000),
    ),
    min_size=1,
    max_size=120,
)


def plan(sql: str) -> Plan:
    (statement,) = split_statements(sql)
    return plan_query(statement.tree, RewriteContext(POLICY, "analyst", "analyst"))


@pytest.fixture(scope="module")
def engine(data_file: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE MACRO privacylens_secret() AS 'test-secret'")
    con.execute(
        "CREATE TABLE base AS SELECT * FROM read_parquet(?)", [str(data_file.parent / "visits.parquet")]
    )
    return con


def measures(con: duckdb.DuckDBPyConnection, query: Plan) -> dict[str, list[float]]:
    result = con.execute(query.engine_sql, query.engine_parameters([]))
    names = [d[0] for d in result.description or []]
    observed = {tuple(str(v) for v in row[: len(query.keys)]): row for row in result.fetchall()}
    out: dict[str, list[float]] = {}
    for measure in (query.threshold, *(m for a in query.aggregates for m in a.measures)):
        col = names.index(measure.engine_column)
        out[measure.engine_column] = [
            float(observed[key][col] or 0) if (key := tuple(str(v) for v in group)) in observed else 0.0
            for group in groups_of(query)
        ]
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(added=rows)
def test_one_more_person_moves_measures_within_sensitivity(
    engine: duckdb.DuckDBPyConnection, added: list[tuple[str, dt.date, float, int]]
) -> None:
    engine.execute("CREATE OR REPLACE TABLE visits AS SELECT * FROM base")
    before = {sql: measures(engine, plan(sql)) for sql in QUERIES}
    engine.executemany(
        "INSERT INTO visits VALUES (?, ?, ?, ?, ?)", [(NEW_USER, day, ch, m, p) for ch, day, m, p in added]
    )
    for sql in QUERIES:
        query = plan(sql)
        after = measures(engine, query)
        for measure in (query.threshold, *(m for a in query.aggregates for m in a.measures)):
            moved = sum(
                abs(a - b)
                for a, b in zip(after[measure.engine_column], before[sql][measure.engine_column], strict=True)
            )
            assert moved <= measure.sensitivity + 1e-6, (sql, measure)


def test_heavy_users_are_really_capped(engine: duckdb.DuckDBPyConnection) -> None:
    engine.execute("CREATE OR REPLACE TABLE visits AS SELECT * FROM base")
    query = plan("SELECT channel, COUNT(*) FROM visits GROUP BY channel")
    (total,) = engine.execute(
        "SELECT COUNT(*) FROM base WHERE channel IN ('web','app','email','store')"
    ).fetchone()
    kept = sum(measures(engine, query)["__m0"])
    assert kept < total  # heavy users lost rows beyond 5 per channel and 2 channels
    (most,) = engine.execute(
        "SELECT max(n) FROM (SELECT user_id, COUNT(*) n FROM ("
        + query.engine_sql.split(" SELECT __k0")[0]
        + " SELECT * FROM __bounded) GROUP BY user_id)"
    ).fetchone()
    assert most <= 10  # at most 2 groups x 5 rows per person


def test_new_data_is_checked_before_plans_trust_one_row_per_unit(data_file: Path, tmp_path: Path) -> None:
    """`one_row_per_unit` holds for the data that was checked: once the file is replaced by one
    where every person has two rows, answers bound each person to one row again."""
    import os

    import psycopg
    import yaml

    from tests.proxy_process import DEMO_POLICY, start_proxy

    source = tmp_path / "employees.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet('{data_file}')) TO '{source}' (FORMAT parquet)")
        (people,) = con.execute(f"SELECT COUNT(*) FROM read_parquet('{data_file}')").fetchone()  # type: ignore[misc]
    policy = yaml.safe_load(DEMO_POLICY.read_text())
    policy["datasets"] = {"employees": {**policy["datasets"]["employees"], "source": str(source)}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    proxy = start_proxy(path, tmp_path)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            before = conn.execute("SELECT COUNT(*) FROM employees").fetchone()[0]  # type: ignore[index]
            assert abs(before - people) < 0.02 * people
            doubled = tmp_path / "doubled.parquet"
            with duckdb.connect() as con:
                con.execute(
                    f"COPY (SELECT * FROM read_parquet('{data_file}') UNION ALL "
                    f"SELECT * FROM read_parquet('{data_file}')) TO '{doubled}' (FORMAT parquet)"
                )
            os.replace(doubled, source)
            for sql in ("SELECT COUNT(*) FROM employees WHERE age > 0", "SELECT COUNT(*) FROM employees"):
                after = conn.execute(sql).fetchone()[0]  # type: ignore[index]
                assert abs(after - people) < 0.02 * people, (sql, after)  # not 2x: one row per person
    finally:
        proxy.stop()
