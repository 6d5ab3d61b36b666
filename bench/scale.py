"""Start-up time, memory and the DP aggregate at lake scale, as ratios against DuckDB in this process.

    .venv/bin/python -m bench.scale [--sizes 1,10,50] [--runs 15] [--query-size 10]

For each size (millions of rows) an employees-shaped Parquet file is generated once (cached under
`--data-dir`). Per size it measures, in a subprocess each so memory is not shared: what a full
in-memory copy costs (DuckDB `CREATE TABLE AS` the file: the start-up this project had before issue
11) against the proxy's start-up (process start to accepting connections, with the file scanned in
place) and its resident memory (VmRSS when ready, and VmHWM after one DP query). At `--query-size` it
times the DP aggregate over the wire (psycopg, a new question each run, so plan, debit, engine and
noise all run) against the same aggregate run by raw DuckDB on the same Parquet file in this process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg
import yaml

from bench.query_overhead import timed
from tests.proxy_process import DEMO_POLICY, start_proxy

QUERY = (
    "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM {table} "
    "WHERE salary > {floor} GROUP BY department"
)
DEPARTMENTS = ["Engineering", "Sales", "Operations", "Support", "Marketing", "Finance",
               "Human Resources", "Legal", "Research", "Board"]  # fmt: skip
COPY_PROBE = """
import duckdb, resource, sys, time
started = time.perf_counter()
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE employees AS SELECT * FROM read_parquet(?)", [sys.argv[1]])
seconds = time.perf_counter() - started
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def generate(path: Path, rows: int) -> None:
    """Employees-shaped rows, one per person, with a fixed seed so runs compare."""
    if path.exists():
        return
    departments = "[" + ", ".join(f"'{d}'" for d in DEPARTMENTS) + "]"
    with duckdb.connect() as con:
        con.execute("SELECT setseed(0.42)")
        con.execute(
            f"COPY (SELECT i AS user_id, list_extract({departments}, 1 + CAST(i % 10 AS INTEGER)) AS department, "
            "20000 + random() * 230000 AS salary, CAST(18 + random() * 52 AS INTEGER) AS age, "
            "DATE '2005-01-01' + CAST(random() * 7300 AS INTEGER) AS hire_date "
            f"FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
        )


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def policy_for(data: Path, directory: Path) -> Path:
    demo = yaml.safe_load(DEMO_POLICY.read_text())
    employees = {**demo["datasets"]["employees"], "source": str(data)}
    employees["budget"] = {"epsilon": 1e6}
    path = directory / f"policy-{data.stem}.yaml"
    path.write_text(yaml.safe_dump({"users": demo["users"], "datasets": {"employees": employees}}))
    return path


def wait_until_checked(conn: psycopg.Connection, timeout: float = 120.0) -> None:
    """Large files are checked for one row per person in the background; until then plans bound
    contribution. Time the plan analysts get once the check has passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT COUNT(*) FROM employees"))
        if "__capped" not in plan:
            return
        time.sleep(0.5)
    raise RuntimeError("the one-row-per-person check did not finish")


def compare_query(data: Path, conn: psycopg.Connection, runs: int) -> dict[str, float]:
    """Median times of the aggregate on raw DuckDB (this process) and as a DP query over the wire;
    each run asks a new question (another WHERE bound), so nothing is re-served from a cache."""
    raw = duckdb.connect()
    scan = f"read_parquet('{data}')"
    floors = iter(range(20001, 10**9))
    raw_s = timed(lambda: raw.execute(QUERY.format(table=scan, floor=next(floors))).fetchall(), runs)
    dp_s = timed(lambda: conn.execute(QUERY.format(table="employees", floor=next(floors))).fetchall(), runs)
    return {"raw_duckdb_ms": 1e3 * raw_s, "dp_wire_ms": 1e3 * dp_s, "ratio": dp_s / raw_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,10,50", help="millions of rows")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--query-size", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "privacylens-bench")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for millions in sizes:
            data = args.data_dir / f"employees-{millions}m.parquet"
            generate(data, millions * 1_000_000)
            out = subprocess.run(
                [sys.executable, "-c", COPY_PROBE, str(data)], capture_output=True, text=True, check=True
            )
            copy_s, copy_kib = out.stdout.strip().splitlines()[-1].split()
            started = time.perf_counter()
            proxy = start_proxy(policy_for(data, work), work, timeout=300)
            ready_s = time.perf_counter() - started
            try:
                at_start = memory_kib(proxy.process.pid)
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    conn.execute(QUERY.format(table="employees", floor=20000)).fetchall()
                    row = {
                        "rows": millions * 1_000_000,
                        "file_mb": round(data.stat().st_size / 2**20),
                        "copy_s": float(copy_s),
                        "copy_rss_mb": round(int(copy_kib) / 1024),
                        "proxy_ready_s": ready_s,
                        "proxy_rss_mb": round(at_start["VmRSS"] / 1024),
                        "proxy_peak_mb_after_query": round(memory_kib(proxy.process.pid)["VmHWM"] / 1024),
                    }
                    if millions == args.query_size:
                        wait_until_checked(conn)
                        row.update(compare_query(data, conn, args.runs))
            finally:
                proxy.stop()
            results.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("rows        file  full copy: s / RSS   proxy ready: s / RSS   proxy peak after a query")
    for r in results:
        print(
            f"{r['rows']:>10,}  {r['file_mb']:>4} MB  {r['copy_s']:8.2f} s / {r['copy_rss_mb']:>5} MB"
            f"   {r['proxy_ready_s']:8.2f} s / {r['proxy_rss_mb']:>4} MB   {r['proxy_peak_mb_after_query']:>5} MB"
        )
    for r in results:
        if "ratio" in r:
            print(
                f"\nat {r['rows']:,} rows: raw DuckDB on the Parquet file {r['raw_duckdb_ms']:.1f} ms (baseline), "
                f"DP aggregate over the wire {r['dp_wire_ms']:.1f} ms, ratio {r['ratio']:.2f}x"
            )


if __name__ == "__main__":
    main()
