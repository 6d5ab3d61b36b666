"""kill -9 mid-burst: every answer a client received was debited on disk before it left."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable

import psycopg

from tests.proxy_process import ProxyProcess


def test_kill_9_loses_no_debit(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 1000.0})
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        nonlocal answered
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True, connect_timeout=5) as conn:
                asked = 0
                while not stop.is_set():
                    asked += 1  # a new question each time, so none is answered from the cache
                    conn.execute(
                        f"SELECT COUNT(*) FROM employees WHERE age <> -{number * 100000 + asked}"
                    ).fetchall()
                    with lock:
                        answered += 1
        except psycopg.Error:
            return  # the server died under us

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while answered < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.process.send_signal(signal.SIGKILL)
    proxy.process.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=10)

    with sqlite3.connect(proxy.ledger) as db:
        (debits,) = db.execute("SELECT COUNT(*) FROM debits").fetchone()
        (spent,) = db.execute("SELECT spent_micro FROM accounts").fetchone()
        (summed,) = db.execute("SELECT SUM(cost_micro) FROM debits").fetchone()
    assert answered >= 40
    assert debits >= answered  # at most the in-flight queries were charged without an answer
    assert debits <= answered + len(threads)
    assert spent == summed == debits * 500_000
