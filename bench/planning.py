"""Parse + check + plan time of typical analyst queries, against DuckDB planning the raw query.

    .venv/bin/python -m bench.planning [--runs 200]

For each query of a fixed set (grouped counts and averages, filtered sums, quantiles, a contribution-
bounded `visits` query, time buckets, parameters, HAVING / ORDER BY / LIMIT) it prints the median time
the rewriter takes to turn the text into the engine's plan (`rewriter.pipeline.plan_query`, what a
fresh question pays before its engine runs) and, as the baseline, the median time DuckDB takes to
parse and plan the same query text over the demo tables (EXPLAIN, no data read). The last line is the
median over the set: issue 14 asks for under 2 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import duckdb

from bench.query_overhead import timed
from demo import visits
from demo.employees import generate
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import load_policy
from tests.proxy_process import DEMO_POLICY

QUERIES = [
    "SELECT department, COUNT(*) FROM employees GROUP BY department",
    "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department",
    "SELECT SUM(salary) FROM employees WHERE age > 40",
    "SELECT department, AVG(salary) FROM employees WHERE hire_date >= '2015-01-01' GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
    "SELECT COUNT(*) FROM employees WHERE department IN ('Sales', 'Legal') AND age BETWEEN 30 AND 50",
    "SELECT department, VAR_POP(salary), STDDEV(age) FROM employees GROUP BY department",
    "SELECT MEDIAN(salary) FROM employees",
    "SELECT department, PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY salary) FROM employees GROUP BY 1",
    "SELECT channel, COUNT(*), COUNT(DISTINCT user_id), AVG(minutes) FROM visits GROUP BY channel",
    "SELECT date_trunc('month', hire_date) AS m, COUNT(*) FROM employees "
    "WHERE hire_date >= '2020-01-01' AND hire_date < '2021-01-01' GROUP BY 1 ORDER BY 1",
    "SELECT department, COUNT(*) FROM employees WHERE salary > $1 GROUP BY department",
    "SELECT department, COUNT(*) AS n FROM employees GROUP BY department HAVING COUNT(*) > 100",
    "SELECT COUNT(*), AVG(age), SUM(salary) FROM employees WHERE department = 'Engineering'",
    "SELECT channel, SUM(pages) FROM visits WHERE visit_date >= '2024-01-01' GROUP BY channel",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    policy = load_policy(DEMO_POLICY)
    context = RewriteContext(policy, "analyst", "analyst", unique_units=frozenset({"employees"}))
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder) / "employees.parquet", scale=0.1)
        visits.generate(Path(folder) / "visits.parquet")
        con = duckdb.connect()
        for name in ("employees", "visits"):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM '{Path(folder) / name}.parquet'")
        ours, theirs = [], []
        print(f"{'rewriter':>10} {'DuckDB':>8} {'ratio':>6}  query")
        for sql in QUERIES:

            def rewrite(text: str = sql) -> None:
                (statement,) = split_statements(text)  # a plain-text question pays the parse too
                assert statement.tree is not None
                plan_query(statement.tree, context)

            def explain(text: str = sql.replace("$1", "50000")) -> None:
                con.execute(f"EXPLAIN {text}").fetchall()

            planned, baseline = timed(rewrite, args.runs), timed(explain, args.runs)
            ours.append(planned)
            theirs.append(baseline)
            print(f"{planned * 1e3:8.2f}ms {baseline * 1e3:6.2f}ms {planned / baseline:5.1f}x  {sql[:70]}")
        mine, duck = statistics.median(ours), statistics.median(theirs)
        print(
            f"median over {len(QUERIES)} queries: rewriter {mine * 1e3:.2f} ms, "
            f"DuckDB {duck * 1e3:.2f} ms ({mine / duck:.1f}x)"
        )


if __name__ == "__main__":
    main()
