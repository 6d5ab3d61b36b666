"""The PostgreSQL store: several proxy replicas share one budget, one answer cache and one audit chain.

Same guarantees as SQLite: a charge is atomic and made before the answer leaves, never overspent
across replicas, nothing lost when a replica is killed mid-burst, the audit chain intact.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest

from pgerrors import BudgetExhausted
from privacy.budget import PureDP
from stores.audit import verify
from stores.ledger import Cost, Ledger, Terms
from tests.postgres_server import PostgresServer
from tests.proxy_process import ProxyProcess, start_proxy, write_policy

EPSILON = 0.5


def test_ledger_on_postgresql_never_overspends_under_threads(postgres: PostgresServer) -> None:
    ledger = Ledger(postgres.create_database("threads"))
    terms = Terms(PureDP.total(3.0))
    results: list[bool] = []

    def charge(i: int) -> None:
        try:
            ledger.charge("d", "u", Cost(Fraction(1, 4)), terms, f"f{i}")
            results.append(True)
        except BudgetExhausted:
            results.append(False)

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 12
    assert ledger.balance("d", "u", terms.total).spent == terms.total
    ledger.close()


def _replicas(factory: Callable[[], Path], workdir: Path, url: str, count: int) -> list[ProxyProcess]:
    return [start_proxy(factory(), workdir, args=["--ledger", url]) for _ in range(count)]


def test_two_replicas_share_one_budget(postgres: PostgresServer, tmp_path: Path, data_file: Path) -> None:
    """32 clients race on two replicas for a budget that affords 10 answers: exactly 10 are given."""
    url = postgres.create_database("race")
    affordable = 10
    policy = write_policy(tmp_path, data_file, **{"budget.epsilon": affordable * EPSILON})
    replicas = _replicas(lambda: policy, tmp_path, url, 2)
    answered, refused, errors = [], [], []
    barrier = threading.Barrier(32)

    def client(number: int) -> None:
        replica = replicas[number % 2]
        try:
            with psycopg.connect(replica.dsn(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"SET dp.epsilon = {EPSILON}")
                barrier.wait(timeout=30)
                for asked in range(2):  # a new question each time: the cache serves none of them
                    try:
                        conn.execute(
                            f"SELECT COUNT(*) FROM employees WHERE age <> -{number * 10 + asked}"
                        ).fetchall()
                        answered.append(number)
                    except psycopg.errors.lookup("53400"):
                        refused.append(number)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert len(answered) == affordable
        assert len(refused) == 64 - affordable
        with psycopg.connect(url) as db:
            (debits, summed) = db.execute("SELECT COUNT(*), SUM(cost_micro) FROM debits").fetchone()
            (spent,) = db.execute("SELECT spent_micro FROM accounts WHERE user_name = 'analyst'").fetchone()
        assert debits == affordable
        assert spent == summed == affordable * 500_000
        # one answer cache: the same question on the other replica is answered again at no cost
        with psycopg.connect(replicas[1].dsn(), autocommit=True) as conn:
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute(f"SET dp.epsilon = {EPSILON}")
            first = answered[0]
            for asked in range(2):
                try:
                    conn.execute(
                        f"SELECT COUNT(*) FROM employees WHERE age <> -{first * 10 + asked}"
                    ).fetchall()
                except psycopg.errors.lookup("53400"):
                    continue
                break
        assert any("answered again at no cost" in n for n in notices)
        assert verify(url).ok
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.slow
def test_kill_9_of_one_replica_loses_no_debit(
    postgres: PostgresServer, tmp_path: Path, data_file: Path
) -> None:
    url = postgres.create_database("kill")
    policy = write_policy(tmp_path, data_file, **{"budget.epsilon": 1000.0})
    victim, survivor = _replicas(lambda: policy, tmp_path, url, 2)
    received = {"victim": 0, "survivor": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int, name: str, replica: ProxyProcess) -> None:
        try:
            with psycopg.connect(replica.dsn(), autocommit=True, connect_timeout=5) as conn:
                asked = 0
                while not stop.is_set():
                    asked += 1
                    conn.execute(
                        f"SELECT COUNT(*) FROM employees WHERE age <> -{number * 100000 + asked}"
                    ).fetchall()
                    with lock:
                        received[name] += 1
        except psycopg.Error:
            return  # the replica died under us

    threads = [
        threading.Thread(target=client, args=(i, name, replica))
        for i, (name, replica) in enumerate([("victim", victim), ("survivor", survivor)] * 4)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while received["victim"] < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        time.sleep(1.0)  # the survivor keeps answering on the shared ledger
        stop.set()
        for t in threads:
            t.join(timeout=30)
        total = received["victim"] + received["survivor"]
        with psycopg.connect(url) as db:
            (debits, summed) = db.execute("SELECT COUNT(*), SUM(cost_micro) FROM debits").fetchone()
            (spent,) = db.execute("SELECT spent_micro FROM accounts WHERE user_name = 'analyst'").fetchone()
        assert received["victim"] >= 30 and received["survivor"] > 0
        assert debits >= total  # every received answer was charged before it left
        assert debits <= total + len(threads)  # at most the in-flight queries were charged unanswered
        assert spent == summed == debits * 500_000
        result = verify(url)
        assert result.ok, result.problems
    finally:
        survivor.stop()


def test_migrate_a_sqlite_ledger_to_postgresql(
    postgres: PostgresServer, proxy_factory: Callable[..., ProxyProcess], tmp_path: Path
) -> None:
    """`privacylens migrate-ledger` copies everything; the chain verifies and balances carry over."""
    import subprocess
    import sys

    proxy = proxy_factory(**{"budget.epsilon": 50.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for i in range(3):
            conn.execute(f"SELECT COUNT(*) FROM employees WHERE age > {20 + i}").fetchall()
    proxy.stop()
    url = postgres.create_database("migrated")
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "migrate-ledger", "--from", str(proxy.ledger), "--to", url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "audit chain intact" in done.stdout
    source, target = Ledger(proxy.ledger), Ledger(url)
    total = PureDP.total(50.0)
    assert target.balance("employees", "analyst", total) == source.balance("employees", "analyst", total)
    assert target.balance("employees", "analyst", total).spent > PureDP(0)
    assert target.secret("contribution-bounding") == source.secret("contribution-bounding")
    target.charge("employees", "analyst", Cost(Fraction(1, 10)), Terms(total), "after")  # ids continue
    assert verify(url).ok
    again = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "migrate-ledger", "--from", str(proxy.ledger), "--to", url],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "already has rows" in again.stderr
