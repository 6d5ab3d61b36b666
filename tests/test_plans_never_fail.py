"""Property: no plan the rewriter accepts can fail, or behave differently, depending on the data.

An engine error that happens only for some rows is an exact oracle: `WHERE <person> AND salary >= t`
failing or not recovers a salary by binary search. So hypothesis builds accepted queries (aggregates,
GROUP BY columns, time buckets, width_bucket and CASE buckets, WHERE from the whole filter grammar)
with adversarial literals (±1e308, ±inf, NaN, huge or negative bucket counts, extreme dates) and runs
each plan in the real locked-down engine over adversarial data (NaN, ±inf, ±1e300, NULLs, one unit
with many rows, extreme dates), with and without contribution bounding. Any engine error fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.duckdb_engine import DuckDBEngine
from engines.running import Limits, RunningQuery
from pgerrors import PgError
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import Policy, load_policy

NUMBERS = ["1", "-7", "0.5", "30.5", "1e308", "-1e308", "1.7e308", "-1.7e308", "1e400", "-1e400",
           "99999999999999999999", "9223372036854775807", "'NaN'", "'Infinity'", "'-infinity'",
           "0"]  # fmt: skip
VALUES = st.sampled_from(
    [*NUMBERS, "'x'", "'a'", "'2020-01-01'", "'2020-13-45'", "'0001-01-01'", "'9999-12-31 23:59:59'",
     "'294276-12-31'", "NULL", "TRUE", "CAST('abc' AS INT)", "DATE '2021-02-03'", "''",
     "CAST('1e308' AS DOUBLE)", "-(-5)"]
)  # fmt: skip
OPS = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
COLUMNS = ["unit", "grp", "x", "n", "d", "ts", "flag"]
NUMERIC = ["x", "n"]


def _column_data() -> list[tuple]:
    """Adversarial rows: unit 1 has 60 rows; values at every edge a double, an int or a date has."""
    specials = [math.nan, math.inf, -math.inf, 1e300, -1e300, None, 0.0, -0.0, 5e-324, 1.7976931348623157e308]
    ints = [None, 0, -(2**31), 2**31 - 1, 7, 70, -5]
    dates = [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2020, 2, 29), None, dt.date(2024, 6, 1)]
    rows = []
    for i in range(200):
        unit = 1 if i < 60 else (None if i % 37 == 0 else i)
        day = dates[i % len(dates)]
        moment = dt.datetime(day.year, day.month, day.day, i % 24) if day is not None else None
        rows.append(
            (unit, ["a", "b", None, "zz"][i % 4], specials[i % len(specials)], ints[i % len(ints)], day,
             moment, [True, False, None][i % 3])
        )  # fmt: skip
    return rows


def _dataset(one_row: bool) -> dict:
    dataset: dict = {
        "source": "adversarial.parquet",
        "privacy_unit": "unit",
        "one_row_per_unit": one_row,
        "budget": {"epsilon": 10.0},
        "max_groups": 200,
        "columns": {
            "unit": {"type": "bigint"},
            "grp": {"type": "text", "group_by_values": ["a", "b", "c"]},
            "x": {"type": "double", "lower": -1000.0, "upper": 1e6},
            "n": {"type": "integer", "lower": 0, "upper": 100},
            "d": {"type": "date", "earliest": "2019-01-01", "latest": "2025-12-31"},
            "ts": {"type": "timestamp", "earliest": "2019-01-01", "latest": "2025-12-31"},
            "flag": {"type": "boolean"},
        },
    }
    if not one_row:
        dataset["contribution"] = {"max_groups_contributed": 2, "max_rows_per_group": 3}
    return dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, DuckDBEngine]:
    directory = tmp_path_factory.mktemp("adversarial")
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (unit BIGINT, grp VARCHAR, x DOUBLE, n INTEGER, d DATE, ts TIMESTAMP, flag BOOLEAN)"
    )
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", _column_data())
    con.execute(f"COPY t TO '{directory / 'adversarial.parquet'}' (FORMAT parquet)")
    policy_file = directory / "policy.yaml"
    # "unique" declares one row per unit but unit 1 has 60 rows: the engine must notice and bound it.
    datasets = {"unique": _dataset(True), "bounded": _dataset(False)}
    policy_file.write_text(yaml.safe_dump({"datasets": datasets}))
    policy = load_policy(policy_file)
    return policy, DuckDBEngine(policy, bounding_secret="property-test")


@st.composite
def atoms(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(COLUMNS))
    kind = draw(st.sampled_from(["cmp", "rcmp", "between", "in", "is", "like", "bool"]))
    if kind == "cmp":
        return f"{column} {draw(OPS)} {draw(VALUES)}"
    if kind == "rcmp":
        return f"{draw(VALUES)} {draw(OPS)} {column}"
    if kind == "between":
        return f"{column} {draw(st.sampled_from(['', 'NOT ']))}BETWEEN {draw(VALUES)} AND {draw(VALUES)}"
    if kind == "in":
        return f"{column} IN ({', '.join(draw(st.lists(VALUES, min_size=1, max_size=3)))})"
    if kind == "is":
        return f"{column} IS {draw(st.sampled_from(['NULL', 'NOT NULL']))}"
    if kind == "bool":
        return "flag"
    return f"grp {draw(st.sampled_from(['LIKE', 'NOT LIKE', 'ILIKE']))} {draw(VALUES)}"


conditions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda c: f"NOT ({c})"),
    ),
    max_leaves=4,
)
AGGREGATES = st.sampled_from(
    ["COUNT(*)", "COUNT(x)", "COUNT(DISTINCT unit)", "SUM(x)", "SUM(n)", "AVG(x)", "AVG(n)",
     "VARIANCE(x)", "STDDEV_POP(n)", "MEDIAN(x)", "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY n)",
     "PERCENTILE_DISC(0) WITHIN GROUP (ORDER BY x)"]
)  # fmt: skip
BUCKET_COUNTS = st.sampled_from(["1", "2", "7", "0", "-3", "2.5", "1e9", "100000000", "198"])


@st.composite
def group_keys(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "grp", "trunc", "width", "case"]))
    if kind == "none":
        return None
    if kind == "grp":
        return "grp"
    if kind == "trunc":
        unit = draw(st.sampled_from(["year", "quarter", "month"]))
        return f"date_trunc('{unit}', {draw(st.sampled_from(['d', 'ts']))})"
    if kind == "width":
        low, high = draw(st.sampled_from(NUMBERS[:10])), draw(st.sampled_from(NUMBERS[:10]))
        return f"width_bucket({draw(st.sampled_from(NUMERIC))}, {low}, {high}, {draw(BUCKET_COUNTS)})"
    label = draw(st.sampled_from([("'lo'", "'hi'"), ("1", "2"), ("1e308", "-1e308")]))
    return f"CASE WHEN {draw(atoms())} THEN {label[0]} ELSE {label[1]} END"


ACCEPTED: list[bool] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dataset=st.sampled_from(["unique", "bounded"]),
    key=group_keys(),
    aggregates=st.lists(AGGREGATES, min_size=1, max_size=3),
    condition=st.one_of(st.none(), conditions),
)
def test_accepted_plans_never_fail_in_the_engine(
    world: tuple[Policy, DuckDBEngine],
    dataset: str,
    key: str | None,
    aggregates: list[str],
    condition: str | None,
) -> None:
    policy, engine = world
    sql = f"SELECT {key + ' AS g, ' if key else ''}{', '.join(aggregates)} FROM {dataset}"
    if condition is not None:
        sql += f" WHERE {condition}"
    if key is not None:
        sql += " GROUP BY 1"
    context = RewriteContext(policy, "analyst", "analyst", unique_units=engine.unique_units)
    try:
        (statement,) = split_statements(sql)
        assert statement.tree is not None
        plan = plan_query(statement.tree, context)
    except PgError:
        ACCEPTED.append(False)
        return  # refused before the engine: fine
    ACCEPTED.append(True)
    asyncio.run(engine.run(plan, plan.engine_parameters([]), RunningQuery(), Limits(timeout_seconds=30)))


def test_most_generated_plans_were_accepted() -> None:
    """The property is only worth its examples if many of them reach the engine."""
    assert sum(ACCEPTED) >= 0.3 * len(ACCEPTED), f"{sum(ACCEPTED)} of {len(ACCEPTED)} accepted"


def test_the_engine_notices_a_false_one_row_per_unit(world: tuple[Policy, DuckDBEngine]) -> None:
    """Unit 1 has 60 rows in a dataset declared one row per unit: the plan bounds it to one."""
    policy, engine = world
    assert "unique" not in engine.unique_units
    (statement,) = split_statements("SELECT COUNT(*) FROM unique WHERE grp = 'a'")
    assert statement.tree is not None
    plan = plan_query(
        statement.tree, RewriteContext(policy, "analyst", "analyst", unique_units=engine.unique_units)
    )
    columns, rows = asyncio.run(engine.run(plan, [], RunningQuery(), Limits()))
    counted = dict(zip(columns, rows[0], strict=True))
    with duckdb.connect() as con:
        (distinct_units,) = con.execute(
            "SELECT COUNT(DISTINCT unit) FROM read_parquet(?) WHERE grp = 'a'",
            [str(policy.source_path("unique"))],
        ).fetchone()  # type: ignore[misc]
    assert counted["__m0"] == distinct_units  # one row per unit, never unit 1's 15 rows in group 'a'
