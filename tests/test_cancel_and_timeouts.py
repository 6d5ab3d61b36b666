"""CancelRequest, statement_timeout and client disconnects really stop a running query.

A long statement is easy to write against the data-less catalog engine (a big `range`); the data
engine uses the same interruptible runner (proxy/running.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psycopg
import pytest
from psycopg import errors

from tests.proxy_process import ProxyProcess

LONG = "SELECT count(*) FROM range(1000000000000)"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cancel_request_stops_the_query(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        threading.Timer(0.5, conn.cancel).start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as raised:
            conn.execute(LONG)
        assert time.monotonic() - started < 5
        assert "user request" in str(raised.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_statement_timeout(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300ms'")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300",)
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as raised:
            conn.execute(LONG)
        assert time.monotonic() - started < 5 and "statement timeout" in str(raised.value)
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SET statement_timeout = 'soon'")


def test_a_long_query_does_not_block_other_clients(proxy: ProxyProcess) -> None:
    with (
        psycopg.connect(proxy.dsn(), autocommit=True) as slow,
        psycopg.connect(proxy.dsn(), autocommit=True) as fast,
    ):
        threading.Timer(1.5, slow.cancel).start()
        worker = threading.Thread(target=lambda: pytest.raises(errors.QueryCanceled, slow.execute, LONG))
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert fast.execute("SELECT COUNT(*) FROM employees").fetchone() is not None
        assert time.monotonic() - started < 1.0
        worker.join(timeout=10)


def test_disconnecting_client_stops_its_query(proxy: ProxyProcess) -> None:
    client = subprocess.Popen(
        ["psql", proxy.dsn(), "-X", "-c", LONG],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PGPASSWORD": "demo"},
    )
    time.sleep(1.0)  # the query is running and burning CPU in the proxy
    client.send_signal(signal.SIGKILL)
    client.wait()
    time.sleep(0.5)  # the proxy notices within its polling interval
    before = cpu_seconds(proxy.process.pid)
    time.sleep(1.0)
    assert cpu_seconds(proxy.process.pid) - before < 0.3, "the abandoned query kept running"
