"""One analyst must never stall the others, and no engine text reaches a client (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.proxy_process import ROOT, ProxyProcess


def test_a_cte_named_like_a_duckdb_view_cannot_read_engine_settings(proxy: ProxyProcess) -> None:
    attack = "SELECT * FROM (WITH pg_settings AS (SELECT 1 AS x) SELECT x FROM pg_settings) s, pg_settings d"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        try:
            rows = conn.execute(attack).fetchall()
        except psycopg.Error as error:
            assert error.sqlstate in ("42704", "0A000")
            text = f"{error.diag.message_primary} {error.diag.message_hint}"
            assert "/" not in text and "duckdb" not in text.lower()
        else:  # answered from the emulated pg_settings: PostgreSQL's settings, never DuckDB's
            flat = " ".join(str(v) for row in rows for v in row)
            assert "memory_limit" not in flat and "temp_directory" not in flat and "/tmp" not in flat
        probes = (
            "SELECT * FROM duckdb_settings()",
            "SELECT current_setting('temp_directory')",
            "WITH a AS (SELECT * FROM pg_settings), pg_settings AS (SELECT 1) SELECT * FROM a",
        )
        for probe in probes:
            try:
                rows = conn.execute(probe).fetchall()
            except psycopg.Error as error:
                assert "/" not in (error.diag.message_primary or "")
            else:
                assert "/tmp" not in " ".join(str(v) for row in rows for v in row)


def test_data_less_statements_have_a_row_cap_and_a_time_cap(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.StatementTooComplex, match="more than 10000 rows"):
            conn.execute("SELECT * FROM generate_series(1, 6000000)")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT sum(x) FROM range(100000000000) t(x)")
        assert time.monotonic() - started < 15
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on


ATTACKER = """
import json, sys, time, psycopg
dsn, statements = sys.argv[1], json.loads(open(sys.argv[2]).read())
deadline = time.monotonic() + 60
with psycopg.connect(dsn, autocommit=True) as conn:
    while time.monotonic() < deadline:
        for sql in statements:
            try:
                conn.execute(sql)
            except psycopg.Error:
                pass
"""
HEAVY = [
    "EXPLAIN SELECT COUNT(*) FROM employees WHERE "
    + " OR ".join(f"salary < {i}" for i in range(20000)),  # 300 KB of terms
    "EXPLAIN SELECT COUNT(*) FROM employees WHERE "
    + " OR ".join(f"salary < {i}" for i in range(4000)),  # 68 KB: under the size cap, over the tree cap
    "EXPLAIN SELECT COUNT(*) FROM employees WHERE "
    + " OR ".join(f"salary < {i}" for i in range(140)),  # under every cap: planned in a worker
    "SELECT COUNT(*) FROM employees WHERE " + "NOT (" * 5000 + "age > 1" + ")" * 5000,
    "SELECT sum(x) FROM range(100000000000) t(x)",
    "SELECT width_bucket(age, 0, 1000, 100000000) AS b, COUNT(*) FROM employees GROUP BY 1",
]


@pytest.mark.parametrize("heavy", [HEAVY], ids=["worst-statements"])
def test_select_1_answers_while_another_client_runs_the_worst_statement(
    proxy: ProxyProcess, heavy: list[str], tmp_path: Path
) -> None:
    """While one client sends the heaviest planning and data-less work we know, another client's
    SELECT 1 still answers within 100 ms."""
    # The attacker is another process, as it would be: a thread here would compete for this
    # process's GIL and measure the test, not the server.
    statements = tmp_path / "statements.json"
    statements.write_text(json.dumps(heavy))
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, proxy.dsn("analyst2"), str(statements)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        time.sleep(1.0)
        latencies = []
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            for _ in range(40):
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
        assert attacker.poll() is None, "the attacker stopped early"
    finally:
        attacker.kill()
        attacker.wait()
    latencies.sort()
    # Idle, SELECT 1 here takes ~7 ms with rare 70 ms outliers on this 2-core machine (the
    # attacker, the server and this test share it); before planning moved off the event loop, one
    # 68 KB EXPLAIN stalled every session for 6.4 s.
    p90, worst = latencies[int(len(latencies) * 0.9)], latencies[-1]
    assert p90 < 0.1 and worst < 1.0, [round(x * 1000, 1) for x in latencies]
