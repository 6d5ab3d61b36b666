"""The one way the privacy stores open and write the ledger database (SQLite, WAL mode).

`ledger`, `audit` and `monitor` each hold their own connection to the same file; every write goes
through `immediate`, which takes SQLite's write lock from the first read to COMMIT, so concurrent
writers — threads or processes sharing the file — are serialised.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal


def connect(
    path: str | Path, schema: str, synchronous: Literal["FULL", "NORMAL"] = "FULL"
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, with the tables of `schema`."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    db.executescript(schema)
    return db


@contextmanager
def immediate(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[None]:
    """One write transaction holding SQLite's write lock from the first read to COMMIT."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
