"""Observed error vs the mechanism's theoretical error, per aggregate and ε, and interval coverage.

    .venv/bin/python -m bench.accuracy [--draws 400]

Runs the real rewriter and release path in-process on the demo data (no network): for each query
and ε, it plans once, runs the clipped engine SQL once on DuckDB, then draws fresh noise `draws`
times (each draw is what one release would show) and compares with the true clipped value:
- ratio = observed RMSE / theoretical noise standard deviation (1.00 means no wasted budget);
- coverage of the 95% intervals (at least 0.95; exact for counts and sums).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import duckdb

from answers.release import draw_noise, present
from demo import employees
from privacy.mechanisms import mechanism
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import load_policy
from tests.proxy_process import write_policy

QUERIES = {
    "COUNT(*)": "SELECT COUNT(*) FROM employees WHERE department = 'Sales'",
    "SUM(salary)": "SELECT SUM(salary) FROM employees WHERE department = 'Sales'",
    "AVG(salary)": "SELECT AVG(salary) FROM employees WHERE department = 'Sales'",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "employees.parquet"
        employees.generate(data)
        (Path(tmp) / "visits.parquet").write_bytes(b"")  # unused by these queries
        policy = load_policy(write_policy(Path(tmp), data))
        con = duckdb.connect()
        con.execute("CREATE MACRO privacylens_secret() AS 'bench'")
        con.execute("CREATE TABLE employees AS SELECT * FROM read_parquet(?)", [str(data)])
        print(
            f"{'aggregate':<12} {'ε':>5} {'theory sd':>12} {'observed rmse':>14} {'ratio':>6} {'95% coverage':>13}"
        )
        for name, sql in QUERIES.items():
            for epsilon in (0.1, 0.5, 1.0, 2.0):
                (statement,) = split_statements(sql)
                plan = plan_query(statement.tree, RewriteContext(policy, "bench", "analyst", epsilon=epsilon))
                result = con.execute(plan.engine_sql, plan.engine_parameters([]))
                columns = [d[0] for d in result.description or []]
                rows = result.fetchall()
                truth = _truth(plan, columns, rows)
                errors, covered = [], 0
                for _ in range(args.draws):
                    value, low, high = present(plan, draw_noise(plan, columns, rows))[0][:3]
                    errors.append(value - truth)
                    covered += low <= truth <= high
                rmse = math.sqrt(statistics.fmean(e * e for e in errors))
                theory = _theory(plan, truth, rows, columns)
                print(
                    f"{name:<12} {epsilon:>5} {theory:>12.4g} {rmse:>14.4g} {rmse / theory:>6.2f} "
                    f"{covered / args.draws:>13.3f}"
                )


def _truth(plan, columns, rows):  # type: ignore[no-untyped-def]
    aggregate = plan.aggregates[0]
    row = dict(zip(columns, rows[0], strict=True))
    if aggregate.function == "avg":
        centred, count = (row[m.engine_column] for m in aggregate.measures)
        return aggregate.midpoint + centred / count
    return float(row[aggregate.measures[0].engine_column])


def _theory(plan, truth, rows, columns) -> float:  # type: ignore[no-untyped-def]
    """The noise standard deviation the mechanism promises (for AVG, the delta-method approximation)."""
    aggregate = plan.aggregates[0]
    sds = [mechanism(m.kind, m.scale, m.discrete).standard_deviation() for m in aggregate.measures]
    if aggregate.function != "avg":
        return sds[0]
    row = dict(zip(columns, rows[0], strict=True))
    count = row[aggregate.measures[1].engine_column]
    deviation = truth - aggregate.midpoint
    return math.sqrt(sds[0] ** 2 + (deviation * sds[1]) ** 2) / count


if __name__ == "__main__":
    main()
