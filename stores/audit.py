"""The append-only audit log, in the ledger database, as a hash chain.

Every row stores the SHA-256 of its own content and of the previous row (`prev_hash`), and the
`audit_head` row holds the newest hash, so `verify` detects a modified row, a deleted row (the
chain breaks) and deleted newest rows (the head no longer matches). Written in the same SQLite
database and transaction discipline as the ledger.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stores.database import Database, Tx, as_database
from stores.deferred import DeferredWrites

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id {serial},
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    user_name TEXT NOT NULL,
    dataset TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    hash TEXT NOT NULL,
    count BIGINT NOT NULL
);
"""
GENESIS = "0" * 64


def _digest(at: float, kind: str, user: str, dataset: str | None, detail: str, prev: str) -> str:
    payload = json.dumps([repr(at), kind, user, dataset, detail, prev], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def append(
    tx: Tx, kind: str, user: str, dataset: str | None, detail: dict[str, Any], at: float | None = None
) -> None:
    """Append one row inside the caller's write transaction (the ledger's debit uses it, so a debit
    and its audit row commit together or not at all)."""
    text = json.dumps(detail, sort_keys=True, default=str)
    head = tx.one("SELECT hash, count FROM audit_head")
    prev, count = (head[0], head[1]) if head else (GENESIS, 0)
    at = time.time() if at is None else at
    digest = _digest(at, kind, user, dataset, text, prev)
    tx.execute(
        "INSERT INTO audit (at, kind, user_name, dataset, detail, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, kind, user, dataset, text, prev, digest),
    )
    tx.execute(
        "INSERT INTO audit_head (one, hash, count) VALUES (1, ?, ?) "
        "ON CONFLICT (one) DO UPDATE SET hash = excluded.hash, count = excluded.count",
        (digest, count + 1),
    )


_SECRET_WORDS = re.compile(r"\b(password|passwd|secret|token|credential|encrypted|api_?key)\b", re.I)
_LITERALS = re.compile(r"'(?:[^']|'')*'?|\$([A-Za-z_]*)\$.*?\$\1\$", re.S)


def redact(statement: str) -> str:
    """A statement as the audit log keeps it: when it may carry a secret (CREATE USER ... PASSWORD,
    a token), every quoted literal is replaced by '***'.

    >>> redact("CREATE USER bob PASSWORD 'hunter2'")
    "CREATE USER bob PASSWORD '***'"
    >>> redact("SELECT COUNT(*) FROM t WHERE d = 'Sales'")
    "SELECT COUNT(*) FROM t WHERE d = 'Sales'"
    """
    if not _SECRET_WORDS.search(statement):
        return statement
    return _LITERALS.sub("'***'", statement)


class AuditLog:
    def __init__(self, location: str | Path | Database) -> None:
        self.db = as_database(location)
        self.db.create(SCHEMA)
        self.deferred = DeferredWrites(self.db)

    def record(self, kind: str, user: str, dataset: str | None = None, **detail: Any) -> None:
        """Append one event (query answered / refused, policy loaded, ...), committed before it
        returns, after the events queued by `record_soon`."""
        self.deferred.flush(lambda tx: append(tx, kind, user, dataset, detail))

    def record_soon(self, kind: str, user: str, dataset: str | None = None, **detail: Any) -> None:
        """Append an event that may wait for the next batch (stores.deferred): a re-served answer.
        Its time is when it happened, not when it is written."""
        at = time.time()
        self.deferred.add(lambda tx: append(tx, kind, user, dataset, detail, at))

    def close(self) -> None:
        self.deferred.close()
        self.db.close()


@dataclass(frozen=True)
class Verification:
    rows: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(location: str | Path | Database) -> Verification:
    """Walk the chain; report every row whose content, link or position does not check out."""
    db = as_database(location)
    try:
        db.create(SCHEMA)
        problems: list[str] = []
        prev = GENESIS
        rows = db.query(
            "SELECT id, at, kind, user_name, dataset, detail, prev_hash, hash FROM audit ORDER BY id"
        )
        for row_id, at, kind, user, dataset, detail, prev_hash, digest in rows:
            if prev_hash != prev:
                problems.append(
                    f"row {row_id}: does not follow the previous row (a row before it was removed)"
                )
            if _digest(at, kind, user, dataset, detail, prev_hash) != digest:
                problems.append(f"row {row_id}: its content was changed")
            prev = digest
        heads = db.query("SELECT hash, count FROM audit_head")
        head = heads[0] if heads else None
        if head is not None and (head[0] != prev or head[1] != len(rows)):
            problems.append(
                f"the log ends at row {rows[-1][0] if rows else 0} but {head[1]} rows were written: "
                "its newest rows were removed or changed"
            )
        return Verification(len(rows), problems)
    finally:
        if db is not location:
            db.close()
