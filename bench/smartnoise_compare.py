"""PrivacyLens vs SmartNoise SQL: same 1,000,000-row table, same query, same total ε; error and time.

    .venv/bin/python -m bench.smartnoise_compare [--runs 20] [--epsilon 1.0]

Query: SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department.
SmartNoise charges ε per statistic (COUNT, and SUM and COUNT for AVG) plus one for its threshold
count, so it is given epsilon/cost-per-ε to spend the same total. Both clip salary to
[20000, 250000]; the truth is the clipped average. SmartNoise runs in its own virtual environment
(.venv-smartnoise, created on first use: `smartnoise-sql==1.0.10 pandas`), because it needs OpenDP 0.14.
Both sides run in-process on the same machine (PrivacyLens: rewriter + DuckDB + noise, no network).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

from answers.release import draw_noise, present
from demo import employees
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import load_policy
from tests.proxy_process import ROOT, write_policy

QUERY = "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department"
VENV = ROOT / ".venv-smartnoise"


def smartnoise_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "smartnoise-sql==1.0.10", "pandas"], check=True
        )
    return python


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "employees.parquet"
        rows = employees.generate(data, scale=68)
        (work / "visits.parquet").write_bytes(b"")
        con = duckdb.connect()
        con.execute("CREATE MACRO privacylens_secret() AS 'bench'")
        con.execute("CREATE TABLE employees AS SELECT * FROM read_parquet(?)", [str(data)])
        csv = work / "employees.csv"
        con.execute("COPY employees TO ? (HEADER false)", [str(csv)])
        truth = {
            d: (n, a)
            for d, n, a in con.execute(
                "SELECT department, COUNT(*), AVG(LEAST(GREATEST(salary, 20000), 250000)) FROM employees GROUP BY 1"
            ).fetchall()
        }

        policy = load_policy(write_policy(work, data, **{"max_groups": 1000, "query.max_epsilon": 10.0}))
        ours, our_times = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            (statement,) = split_statements(QUERY)
            plan = plan_query(
                statement.tree, RewriteContext(policy, "bench", "analyst", epsilon=args.epsilon)
            )
            result = con.execute(plan.engine_sql, plan.engine_parameters([]))
            columns = [d[0] for d in result.description or []]
            released = present(plan, draw_noise(plan, columns, result.fetchall()))
            our_times.append(time.perf_counter() - start)
            ours.append([[r[0], r[1], r[4]] for r in released if not r[-1]])

        python = smartnoise_python()
        probe = json.loads(
            subprocess.run(
                [str(python), str(ROOT / "bench" / "smartnoise_side.py"), str(csv), "1", "1.0", "1e-5"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        per_stat = args.epsilon / probe["cost"][0]  # their cost is linear in the per-statistic ε
        theirs_raw = json.loads(
            subprocess.run(
                [
                    str(python),
                    str(ROOT / "bench" / "smartnoise_side.py"),
                    str(csv),
                    str(args.runs),
                    str(per_stat),
                    "1e-5",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )

    print(
        f"{rows} rows; total ε {args.epsilon} each; {args.runs} runs; SmartNoise per-statistic ε {per_stat:.4g} "
        f"(its query cost at 1.0 per statistic: ε {probe['cost'][0]:g}, δ {probe['cost'][1]:.2g}); PrivacyLens δ 0"
    )
    print(
        f"{'department':<16} {'true n':>8} {'n RMSE ours':>12} {'n RMSE SN':>10} {'true avg':>10} "
        f"{'avg RMSE ours':>14} {'avg RMSE SN':>12}"
    )
    totals = {"n_ours": [], "n_sn": [], "avg_ours": [], "avg_sn": []}
    for department in sorted(truth, key=lambda d: -truth[d][0]):
        n, avg = truth[department]
        errors = {key: [] for key in totals}
        for run in ours:
            for d, rn, ra in run:
                if d == department:
                    errors["n_ours"].append(rn - n)
                    errors["avg_ours"].append(ra - avg)
        for run in theirs_raw["runs"]:
            for d, rn, ra in run:
                if d == department:
                    errors["n_sn"].append(rn - n)
                    errors["avg_sn"].append(ra - avg)
        rmse = {
            k: math.sqrt(statistics.fmean(e * e for e in v)) if v else float("nan") for k, v in errors.items()
        }
        for key in totals:
            totals[key].append(rmse[key])
        print(
            f"{department:<16} {n:>8} {rmse['n_ours']:>12.3g} {rmse['n_sn']:>10.3g} {avg:>10.0f} "
            f"{rmse['avg_ours']:>14.3g} {rmse['avg_sn']:>12.3g}"
        )
    print(
        f"{'mean':<16} {'':>8} {statistics.fmean(totals['n_ours']):>12.3g} {statistics.fmean(totals['n_sn']):>10.3g} "
        f"{'':>10} {statistics.fmean(totals['avg_ours']):>14.3g} {statistics.fmean(totals['avg_sn']):>12.3g}"
    )
    print(
        f"median time per query: PrivacyLens {statistics.median(our_times) * 1e3:.1f} ms, "
        f"SmartNoise {statistics.median(theirs_raw['times']) * 1e3:.1f} ms "
        f"({statistics.median(theirs_raw['times']) / statistics.median(our_times):.1f}x)"
    )


if __name__ == "__main__":
    main()
