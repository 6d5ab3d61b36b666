"""The Spark engine on a real local Spark session: files and catalog tables, cancel, and the wire.

Cross-engine agreement of exact aggregates is in tests/test_engine_equivalence.py; here are the
parts only Spark has: CSV files read with the policy's schema, catalog tables and their data
version, a statement timeout that cancels the query's Spark jobs, one master per proxy, and a
proxy whose dataset lives on Spark answering real clients.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml

from engines.base import EngineUnavailable
from engines.running import Limits, RunningQuery
from pgerrors import QueryCanceled
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import Policy, load_policy
from tests.proxy_process import DEMO_POLICY, start_proxy

try:
    import pyspark  # noqa: F401

    HAVE_SPARK = shutil.which("java") is not None
except ImportError:
    HAVE_SPARK = False

if not HAVE_SPARK:
    if os.environ.get("PRIVACYLENS_REQUIRE_CLIENTS"):
        raise RuntimeError("pyspark or Java is missing (make test installs pyspark)")
    pytest.skip("pyspark or Java is missing", allow_module_level=True)

from engines.open import open_engines  # noqa: E402
from engines.spark_engine import SparkEngine  # noqa: E402
from tests.test_engine_equivalence import assert_employees_served  # noqa: E402

MASTER = "local[2]"
CLICKS = {
    "privacy_unit": "user_id",
    "one_row_per_unit": False,
    "contribution": {"max_groups_contributed": 1, "max_rows_per_group": 3},
    "budget": {"epsilon": 5.0},
    "columns": {
        "user_id": {"type": "bigint"},
        "day": {"type": "date", "earliest": "2024-01-01", "latest": "2024-12-31"},
        "amount": {"type": "double", "lower": 0, "upper": 100},
    },
}


def _policy(directory: Path, datasets: dict[str, dict]) -> Policy:
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump({"datasets": datasets}))
    return load_policy(path)


def _plan(policy: Policy, sql: str, unique: frozenset[str] = frozenset()):
    (statement,) = split_statements(sql)
    assert statement.tree is not None
    return plan_query(statement.tree, RewriteContext(policy, "analyst", "analyst", unique_units=unique))


def _run(engine: SparkEngine, plan, limits: Limits | None = None):
    bound = plan.engine_parameters([])
    return asyncio.run(engine.run(plan, bound, RunningQuery(), limits or Limits(timeout_seconds=120)))


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four million clicks by 200,000 users: heavy enough that bounding takes Spark a while."""
    folder = tmp_path_factory.mktemp("clicks") / "clicks"
    folder.mkdir()
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT i % 200000 AS user_id, DATE '2024-01-01' + CAST(i % 366 AS INTEGER) AS day, "
            "CAST(i % 1000 AS DOUBLE) / 10 AS amount FROM range(4000000) t(i)) "
            f"TO '{folder}/part-0.parquet' (FORMAT parquet)"
        )
    return folder


def test_a_statement_timeout_cancels_the_spark_jobs(clicks: Path, tmp_path: Path) -> None:
    policy = _policy(tmp_path, {"clicks": {**CLICKS, "engine": "spark", "master": MASTER,
                                           "source": str(clicks / "*.parquet")}})  # fmt: skip
    engine = SparkEngine(policy, "secret", MASTER)
    try:
        engine.add("clicks")
        plan = _plan(policy, "SELECT COUNT(*), SUM(amount) FROM clicks WHERE day >= '2024-03-01'")
        started = time.monotonic()
        with pytest.raises(QueryCanceled, match="statement timeout"):
            _run(engine, plan, Limits(timeout_seconds=1.0))
        assert time.monotonic() - started < 10
        tracker = engine._spark.sparkContext.statusTracker()
        deadline = time.monotonic() + 10
        while tracker.getActiveJobsIds() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tracker.getActiveJobsIds() == []  # the jobs were cancelled, not left running
        # the engine keeps serving after a cancel
        columns, rows = _run(engine, _plan(policy, "SELECT COUNT(*) FROM clicks WHERE day = '2024-01-01'"))
        assert columns[0] == "__rows" and rows[0][0] > 0
    finally:
        engine.close()


def test_csv_files_and_catalog_tables(data_file: Path, tmp_path: Path) -> None:
    demo = yaml.safe_load(DEMO_POLICY.read_text())["datasets"]["employees"]
    demo.pop("source")
    csv = tmp_path / "employees.csv"
    parquet_folder = tmp_path / "staff"
    parquet_folder.mkdir()
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet('{data_file}')) TO '{csv}' (HEADER)")
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{data_file}') WHERE department <> 'Board') "
            f"TO '{parquet_folder}/part-0.parquet' (FORMAT parquet)"
        )
        expected_all, expected_staff = (
            con.execute(f"SELECT COUNT(*) FROM read_parquet('{data_file}') {where}").fetchone()[0]
            for where in ("", "WHERE department <> 'Board'")
        )
    policy = _policy(tmp_path, {
        "from_csv": {**demo, "engine": "spark", "master": MASTER, "source": str(csv)},
        "from_table": {**demo, "engine": "spark", "master": MASTER, "table": "default.privacylens_staff"},
    })  # fmt: skip
    engine = SparkEngine(policy, "secret", MASTER)
    try:
        root = engine._spark.builder.getOrCreate()  # the catalog is shared by the context's sessions
        root.sql(
            f"CREATE TABLE IF NOT EXISTS default.privacylens_staff USING parquet LOCATION '{parquet_folder}'"
        )
        engine.add("from_csv")
        engine.add("from_table")
        assert "from_csv" in engine.unique_units  # a small file: verified before serving
        deadline = time.monotonic() + 60  # a catalog table: verified in the background
        while "from_table" not in engine.unique_units and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.unique_units == {"from_csv", "from_table"}
        for name, expected in (("from_csv", expected_all), ("from_table", expected_staff)):
            plan = _plan(policy, f"SELECT COUNT(*) FROM {name}", engine.unique_units)
            assert _run(engine, plan)[1][0][0] == expected
        assert "privacylens_staff" in engine.render(_plan(policy, "SELECT COUNT(*) FROM from_table"))
        before = engine.data_version("from_table")
        assert engine.data_version("from_table") == before
        shutil.copy(parquet_folder / "part-0.parquet", parquet_folder / "part-1.parquet")
        assert engine.data_version("from_table") != before  # a new file: cached answers go stale
        plan = _plan(policy, "SELECT COUNT(*) FROM from_table", frozenset({"from_table"}))
        assert _run(engine, plan)[1][0][0] == 2 * expected_staff
    finally:
        root.sql("DROP TABLE IF EXISTS default.privacylens_staff")
        engine.close()


def test_one_spark_master_per_proxy(data_file: Path, tmp_path: Path) -> None:
    demo = yaml.safe_load(DEMO_POLICY.read_text())["datasets"]["employees"]
    policy = _policy(tmp_path, {
        "a": {**demo, "engine": "spark", "master": MASTER, "source": str(data_file)},
        "b": {**demo, "engine": "spark", "master": "local[1]", "source": str(data_file)},
    })  # fmt: skip
    with pytest.raises(EngineUnavailable, match="one Spark master per proxy"):
        open_engines(policy, "secret")
    table = {k: v for k, v in demo.items() if k != "source"}
    bad = _policy(tmp_path, {"c": {**table, "engine": "spark", "master": MASTER, "table": "no_such_table"}})
    with pytest.raises(EngineUnavailable, match="dataset c: Spark cannot read it"):
        open_engines(bad, "secret")


def test_a_spark_dataset_over_the_wire(data_file: Path, tmp_path: Path) -> None:
    """A proxy whose datasets live on Spark answers, charges and explains like any other."""
    demo = yaml.safe_load(DEMO_POLICY.read_text())
    visits = data_file.parent / "visits.parquet"
    policy = {
        "users": demo["users"],
        "datasets": {
            "employees": {**demo["datasets"]["employees"], "engine": "spark", "master": MASTER,
                          "source": str(data_file)},
            "visits": {**demo["datasets"]["visits"], "engine": "spark", "master": MASTER,
                       "source": str(visits)},
        },
    }  # fmt: skip
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    proxy = start_proxy(path, tmp_path, timeout=90.0)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            assert_employees_served(conn, "spark", "`employees`")
            rows = conn.execute(
                "SELECT channel, AVG(minutes) FROM visits WHERE visit_date >= %s GROUP BY 1", ["2024-01-01"]
            ).fetchall()
            assert {r[0] for r in rows} <= {"web", "app", "email", "store"} and rows
            assert all(0 <= r[1] <= 60 for r in rows if r[1] is not None)
    finally:
        proxy.stop()
