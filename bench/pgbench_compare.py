"""pgbench against the proxy and against a throwaway PostgreSQL 15 on the same rows and query shape.

    .venv/bin/python -m bench.pgbench_compare [--clients 8] [--seconds 10] [--workers 2]

The demo's employees table (~15,000 rows) is loaded into a fresh PostgreSQL cluster (the server
binaries in /usr/lib/postgresql/15/bin, started as the `postgres` OS user) and served by a proxy over
the same Parquet file (its budget raised so the run never exhausts it). pgbench runs the grouped
aggregate `SELECT department, COUNT(*), AVG(salary) FROM employees WHERE salary > :lo GROUP BY
department` in simple and prepared protocol modes, twice:

- fresh: `:lo` random in [20000, 249999], so nearly every proxy answer is a new question (plan, budget
  check, engine, noise, one ledger transaction, detectors);
- cached: `:lo` fixed, so after the first every proxy answer is re-served from the answer store.

The proxy runs with `--workers` worker processes (default 2: both cores, as PostgreSQL uses them)
and no per-user rate limit (PostgreSQL has none; a client refused with 53300 would abort, and a run
with an aborted client or a failed transaction is an error, never a figure). It prints each tps and
the proxy / PostgreSQL ratio (issue 14: cached >= 1.0x, fresh >= 0.5x).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

import duckdb
import psycopg

from demo import visits
from demo.employees import generate
from tests.postgres_server import BIN, start_postgres
from tests.proxy_process import start_proxy, write_policy

QUERY = "SELECT department, COUNT(*), AVG(salary) FROM employees WHERE salary > :lo GROUP BY department;"
SCRIPTS = {
    "fresh": "\\set lo random(20000, 249999)\n" + QUERY + "\n",
    "cached": "\\set lo 50000\n" + QUERY + "\n",
}


def load(url: str, parquet: Path) -> None:
    rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{parquet}')").fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE employees (user_id bigint PRIMARY KEY, department text, salary double precision, "
            "age integer, hire_date date)"
        )
        with conn.cursor() as cur, cur.copy("COPY employees FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("ANALYZE employees")


def pgbench(
    port: int, user: str, database: str, script: Path, mode: str, clients: int, seconds: int
) -> float:
    env = {**os.environ, "PGPASSWORD": "demo"}
    done = subprocess.run(
        [str(BIN / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-c", str(clients),
         "-j", "2", "-T", str(seconds), "-M", mode, "-f", str(script), database],
        capture_output=True, text=True, env=env, timeout=seconds + 120,
    )  # fmt: skip
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if found is None:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or "aborted" in done.stderr or (failed and int(failed.group(1))):
        raise RuntimeError(
            f"pgbench saw failed transactions or aborted clients:\n{done.stdout}\n{done.stderr}"
        )
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # pgbench may run as root; the scripts only need to be readable
        data = work / "employees.parquet"
        rows = generate(data)
        visits.generate(work / "visits.parquet")
        scripts = {}
        for name, text in SCRIPTS.items():
            scripts[name] = work / f"{name}.sql"
            scripts[name].write_text(text)
        server = start_postgres()
        # No per-user rate limit (PostgreSQL has none): a client refused with 53300 would abort.
        proxy = start_proxy(
            write_policy(work, data, **{"budget.epsilon": 1e9}),
            work,
            args=["--max-queries-per-minute", "0", "--workers", str(args.workers)],
        )
        try:
            load(server.url(), data)
            print(
                f"rows: {rows}; pgbench -c {args.clients} -j 2 -T {args.seconds}; {args.workers} workers; tps"
            )
            print(f"{'mode':9} {'answers':7} {'PostgreSQL':>11} {'PrivacyLens':>12} {'ratio':>7}")
            for mode in ("simple", "prepared"):
                for name in ("fresh", "cached"):
                    pg = pgbench(
                        server.port, "postgres", "postgres", scripts[name], mode, args.clients, args.seconds
                    )
                    ours = pgbench(
                        proxy.port, "analyst", "demo", scripts[name], mode, args.clients, args.seconds
                    )
                    print(f"{mode:9} {name:7} {pg:11.1f} {ours:12.1f} {ours / pg:6.3f}x")
        finally:
            proxy.stop()
            server.stop()


if __name__ == "__main__":
    main()
