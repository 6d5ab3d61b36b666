"""The audit log records privacy-relevant events, and `verify` detects changed or removed rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from stores.audit import AuditLog, verify
from tests.proxy_process import ROOT, ProxyProcess


def cli_verify(ledger: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "verify", "--ledger", str(ledger)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_queries_and_refusals_are_audited(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 5.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT COUNT(*) FROM employees WHERE age > 33")
        conn.execute("SELECT count(*) FROM employees WHERE AGE > 33")  # the same question again
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT salary FROM employees")
    with sqlite3.connect(proxy.ledger) as db:
        kinds = [r[0] for r in db.execute("SELECT kind FROM audit ORDER BY id")]
        refused = db.execute("SELECT detail FROM audit WHERE kind = 'query refused'").fetchone()[0]
    assert kinds == ["policy loaded", "query answered", "query answered again", "query refused"]
    assert '"sqlstate": "42501"' in refused
    out = cli_verify(proxy.ledger)
    assert out.returncode == 0 and "intact: 4 rows" in out.stdout


def test_every_debit_has_its_audit_row_and_secrets_are_redacted(
    proxy_factory: Callable[..., ProxyProcess],
) -> None:
    proxy = proxy_factory(**{"budget.epsilon": 5.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for age in (20, 21, 22):
            conn.execute(f"SELECT COUNT(*) FROM employees WHERE age > {age}")
        with pytest.raises(psycopg.Error):
            conn.execute("CREATE USER mallory PASSWORD 'hunter2-secret'")
    with sqlite3.connect(proxy.ledger) as db:
        debits = db.execute("SELECT fingerprint FROM debits ORDER BY id").fetchall()
        answered = db.execute(
            "SELECT json_extract(detail, '$.fingerprint') FROM audit "
            "WHERE kind = 'query answered' ORDER BY id"
        ).fetchall()
        details = " ".join(r[0] for r in db.execute("SELECT detail FROM audit"))
    assert len(debits) == 3 and debits == answered  # written in the same transaction as each debit
    assert "hunter2" not in details and "CREATE USER mallory PASSWORD '***'" in details


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit SET detail = '{}' WHERE id = 2",
        "DELETE FROM audit WHERE id = 2",
        "DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)",
        "UPDATE audit SET user_name = 'someone else' WHERE id = 3",
    ],
)
def test_verify_detects_tampering(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "ledger.sqlite"
    log = AuditLog(path)
    for i in range(4):
        log.record("query answered", "analyst", "employees", epsilon=0.5, number=i)
    log.close()
    assert verify(path).ok
    with sqlite3.connect(path) as db:
        db.execute(tamper)
    result = verify(path)
    assert not result.ok and result.problems
    assert cli_verify(path).returncode == 1


def test_refusals_before_planning_are_audited(proxy_factory: Callable[..., ProxyProcess]) -> None:
    """Syntax errors, refused statement kinds and refusals in Parse reach the audit log too."""
    proxy = proxy_factory()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for bad in (
            "SELEC COUNT(*) FROM employees",
            "DROP TABLE employees",
            "SELECT 1; DELETE FROM employees",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(bad)
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT salary FROM employees WHERE age > %s", (30,), prepare=True)
    with sqlite3.connect(proxy.ledger) as db:
        refused = [
            r[0] for r in db.execute("SELECT detail FROM audit WHERE kind = 'query refused' ORDER BY id")
        ]
    assert len(refused) == 4
    assert '"sqlstate": "42601"' in refused[0] and "SELEC COUNT" in refused[0]
    assert "DROP TABLE employees" in refused[1] and "DELETE FROM employees" in refused[2]
    assert '"sqlstate": "42501"' in refused[3]
