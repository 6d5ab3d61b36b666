"""Several worker processes on one port (`--workers 2`): one budget, one set of limits, cancel keys
and metrics across workers, and kill -9 of a worker mid-burst loses no debit."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from stores.audit import verify
from tests.proxy_process import ProxyProcess, free_port

WORKERS = ["--workers", "2"]
LONG = "SELECT count(*) FROM range(1000000000000)"


def workers_of(proxy: ProxyProcess) -> list[int]:
    """The supervisor's children: the worker processes."""
    pid = proxy.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def worker_index(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid & 15  # proxy.workers: a backend pid's low bits name its worker


def connections(proxy: ProxyProcess, count: int, user: str = "analyst") -> list[psycopg.Connection]:
    return [psycopg.connect(proxy.dsn(user), autocommit=True) for _ in range(count)]


def test_connections_reach_both_workers(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(WORKERS)
    assert len(workers_of(proxy)) == 2
    conns = connections(proxy, 16)
    try:
        assert {worker_index(conn) for conn in conns} == {0, 1}
        for conn in conns:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in conns:
            conn.close()


def test_two_workers_never_overspend_one_budget(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(WORKERS, **{"budget.epsilon": 5.0})  # ten answers at the default ε 0.5
    answered: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def client(number: int) -> None:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            start.wait()
            for asked in range(3):  # new questions: none is re-served
                try:
                    conn.execute(f"SELECT COUNT(*) FROM employees WHERE age <> -{number * 10 + asked}")
                    with lock:
                        answered.append(worker_index(conn))
                except errors.QueryCanceled:
                    raise
                except psycopg.Error as error:
                    with lock:
                        refused.append(str(error.sqlstate))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answered) == 10
    assert set(refused) == {"53400"} and len(refused) == 24 * 3 - 10
    with sqlite3.connect(proxy.ledger) as db:
        (debits,) = db.execute("SELECT COUNT(*) FROM debits").fetchone()
        (spent,) = db.execute("SELECT spent_micro FROM accounts").fetchone()
    assert debits == 10 and spent == 5_000_000


def test_kill_9_of_a_worker_loses_no_debit(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(WORKERS, **{"budget.epsilon": 1000.0})
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        nonlocal answered
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True, connect_timeout=5) as conn:
                asked = 0
                while not stop.is_set():
                    asked += 1
                    conn.execute(f"SELECT COUNT(*) FROM employees WHERE age <> -{number * 100000 + asked}")
                    with lock:
                        answered += 1
        except psycopg.Error:
            return  # its worker died, or was restarted with the others

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while answered < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = workers_of(proxy)[0]
    os.kill(victim, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    with lock:
        received = answered

    # The supervisor stops the other worker, recovers and starts both again.
    survivor = workers_of(proxy)[1]
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, proxy.log.read_text()[-3000:]
        restarted = len(workers_of(proxy)) == 2 and not {victim, survivor} & set(workers_of(proxy))
        try:
            if restarted:
                with psycopg.connect(proxy.dsn(), autocommit=True, connect_timeout=5) as conn:
                    conn.execute("SELECT COUNT(*) FROM employees WHERE age <> -999999999")  # a new question
                break
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    with sqlite3.connect(proxy.ledger) as db:
        (debits,) = db.execute("SELECT COUNT(*) FROM debits").fetchone()
        (spent,) = db.execute("SELECT spent_micro FROM accounts").fetchone()
        (summed,) = db.execute("SELECT SUM(cost_micro) FROM debits").fetchone()
    assert received >= 60
    debits -= 1  # the question asked after the restart
    assert received <= debits <= received + len(threads)  # at most the in-flight ones unanswered
    assert spent == summed == (debits + 1) * 500_000
    assert verify(proxy.ledger).ok


def test_cancel_reaches_a_session_on_either_worker(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(WORKERS)
    conns = connections(proxy, 12)  # a CancelRequest reaches the other worker in about half of them
    try:
        assert {worker_index(conn) for conn in conns} == {0, 1}
        for conn in conns:  # each CancelRequest lands on whichever worker accepts it
            threading.Timer(0.3, conn.cancel).start()
            started = time.monotonic()
            with pytest.raises(errors.QueryCanceled):
                conn.execute(LONG)
            assert time.monotonic() - started < 5
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in conns:
            conn.close()
    assert "cancel request passed to worker" in proxy.log.read_text()


def test_limits_hold_across_workers(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory([*WORKERS, "--max-queries-per-minute", "6", "--max-connections-per-user", "8"])
    conns = connections(proxy, 8)
    try:
        assert {worker_index(conn) for conn in conns} == {0, 1}
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            psycopg.connect(proxy.dsn(), autocommit=True)
        outcomes = []
        for conn in conns:
            for _ in range(2):
                try:
                    conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department")
                    outcomes.append("ok")
                except errors.lookup("53300") as error:
                    assert "rate limit" in str(error)
                    outcomes.append("limited")
        assert outcomes.count("ok") in (6, 7)  # 6 at once, then one every 10 s
    finally:
        for conn in conns:
            conn.close()
    time.sleep(0.5)  # the closed connections are counted off
    again = connections(proxy, 8)
    for conn in again:
        assert conn.execute("SHOW server_version").fetchone()  # not rate-limited
        conn.close()


def test_metrics_count_every_worker(proxy_factory: Callable[..., ProxyProcess]) -> None:
    port = free_port()
    proxy = proxy_factory([*WORKERS, "--metrics-port", str(port)])
    conns = connections(proxy, 8)
    try:
        assert {worker_index(conn) for conn in conns} == {0, 1}
        for conn in conns:
            conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        for conn in conns:
            conn.close()
    answered = re.findall(
        r'privacylens_queries_total\{dataset="employees",outcome="(\w+)",[^}]*\} ([0-9.]+)', text
    )
    assert sum(float(n) for outcome, n in answered if outcome.startswith("answered")) == 8
    assert re.search(r"^privacylens_connections 8\.0$", text, re.M), text
    assert "privacylens_budget_remaining{" in text  # the ledger's gauges, read by the supervisor
