"""Activity ingestion rate: COPY through the wire into a real proxy, pseudonymisation on.

    .venv/bin/python -m bench.ingest [--events 1000000] [--users 20000] [--copies 4]

Sends the events as `--copies` COPY statements (text format) from psycopg to a proxy subprocess on a
free port, each acknowledged only once stored durably (Parquet segment fsynced, ledger committed).
Baseline, in this process: raw DuckDB reading the same COPY text from a file and writing it to
Parquet with no pseudonyms, checks or durability. Prints both rates and their ratio (medians of
`--runs`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg

from tests.proxy_process import start_proxy, write_policy


def copy_text(events: int, users: int, offset: int) -> bytes:
    """`events` rows of Oct 2025 over `users` returning users, as COPY text."""
    lines = []
    for i in range(offset, offset + events):
        day = 1 + (i * 7) % 30
        lines.append(f"user-{(i * 7919) % users:07d}\t2025-10-{day:02d} {i % 24:02d}:{i % 60:02d}:00+00\t+\n")
    return "".join(lines).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--copies", type=int, default=4, help="COPY statements the events are split into")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    per_copy = args.events // args.copies
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "employees.parquet").touch()
        from demo import employees, visits

        employees.generate(work / "employees.parquet")
        visits.generate(work / "visits.parquet")
        proxy = start_proxy(write_policy(work, work / "employees.parquet"), work)
        try:
            chunks = [copy_text(per_copy, args.users, k * per_copy) for k in range(args.copies)]
            wire = []
            for _ in range(args.runs):
                start = time.perf_counter()
                with psycopg.connect(proxy.dsn("ingest"), autocommit=True) as conn, conn.cursor() as cur:
                    for chunk in chunks:
                        with cur.copy("COPY activity (user_id, ts, op) FROM STDIN") as copy:
                            for at in range(0, len(chunk), 1 << 20):
                                copy.write(chunk[at : at + (1 << 20)])
                wire.append(time.perf_counter() - start)
        finally:
            proxy.stop()
        raw_file = work / "raw.tsv"
        raw_file.write_bytes(b"".join(chunks))
        baseline = []
        for run in range(args.runs):
            start = time.perf_counter()
            con = duckdb.connect()
            con.execute(
                f"COPY (SELECT * FROM read_csv('{raw_file}', delim = '\\t', header = false, "
                "columns = {'user_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ', 'op': 'VARCHAR'})) "
                f"TO '{work / f'raw-{run}.parquet'}' (FORMAT parquet)"
            )
            con.close()
            baseline.append(time.perf_counter() - start)
    total = per_copy * args.copies
    wire_rate, raw_rate = total / statistics.median(wire), total / statistics.median(baseline)
    print(f"events: {total:,} in {args.copies} COPY statements, {args.users:,} users")
    print(f"PrivacyLens COPY over the wire (pseudonymised, durable): {wire_rate:,.0f} events/s")
    print(f"raw DuckDB CSV -> Parquet in process (baseline):       {raw_rate:,.0f} events/s")
    print(f"ratio (baseline / PrivacyLens): {raw_rate / wire_rate:.2f}x")


if __name__ == "__main__":
    main()
