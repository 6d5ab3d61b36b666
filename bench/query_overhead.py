"""Where the time goes for one DP aggregate, as ratios against raw DuckDB in the same process.

    .venv/bin/python -m bench.query_overhead [--rows 15000] [--runs 200]

Prints: rewriter (parse + check + plan) time per query; the same aggregate run directly on an
in-process DuckDB table (baseline); the DP query end to end over the wire with psycopg (a real proxy
subprocess on a free port); and the ratio of the last two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg

from demo import visits
from demo.employees import generate
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import load_policy
from tests.proxy_process import start_proxy, write_policy

QUERY = "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department"


def timed(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "employees.parquet"
        rows = generate(data)
        visits.generate(work / "visits.parquet")
        policy_path = write_policy(work, data, **{"budget.epsilon": 1e6})
        policy = load_policy(policy_path)
        ctx = RewriteContext(policy, "analyst", "analyst")

        def rewrite() -> None:
            (statement,) = split_statements(QUERY)
            plan_query(statement.tree, ctx)

        rewrite_s = timed(rewrite, args.runs)

        con = duckdb.connect()
        con.execute("CREATE TABLE employees AS SELECT * FROM read_parquet(?)", [str(data)])
        baseline_s = timed(lambda: con.execute(QUERY).fetchall(), args.runs)

        proxy = start_proxy(policy_path, work)
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute(QUERY).fetchall()  # warm up
                wire_s = timed(lambda: conn.execute(QUERY).fetchall(), args.runs)  # re-served from the cache
                fresh = iter(range(10**6))  # a new question each run: plan, debit, engine, noise, detectors
                fresh_s = timed(
                    lambda: conn.execute(
                        QUERY.replace("GROUP BY", f"WHERE salary > {20000 + next(fresh)} GROUP BY")
                    ).fetchall(),
                    args.runs,
                )
                one_s = timed(lambda: conn.execute("SELECT 1").fetchall(), args.runs)
        finally:
            proxy.stop()
    print(f"rows: {rows}, runs: {args.runs}, medians")
    print(f"rewriter parse+check+plan      {rewrite_s * 1e3:8.3f} ms")
    print(f"raw DuckDB aggregate in-process {baseline_s * 1e3:8.3f} ms  (baseline)")
    print(f"DP aggregate over the wire, new {fresh_s * 1e3:8.3f} ms  ratio {fresh_s / baseline_s:5.1f}x")
    print(f"DP aggregate over the wire, re-served {wire_s * 1e3:8.3f} ms  ratio {wire_s / baseline_s:5.1f}x")
    print(f"SELECT 1 over the wire          {one_s * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
