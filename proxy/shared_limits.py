"""The counts behind rate limits, connection caps and the login throttle, shared by the worker
processes of one server (`workers` > 1), so a limit holds across the workers and not per worker.

They live in a small SQLite file in the server's run folder (`proxy.workers`), written with
`synchronous=OFF`: counts that need not survive the server (a restart forgets them, as a single
process does) but must be exact while it runs, which SQLite's write lock gives across processes.
Each worker's open connections are rows of its own, so those of a worker that died are removed
(`forget_worker`) before it is replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from proxy.limits import Bucket
from stores.database import SQLiteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    tenant TEXT NOT NULL, user_name TEXT NOT NULL, tokens REAL NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (tenant, user_name)
);
CREATE TABLE IF NOT EXISTS open_connections (
    worker INTEGER NOT NULL, user_name TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (worker, user_name)
);
CREATE TABLE IF NOT EXISTS login_failures (kind TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_by_key ON login_failures (kind, key, at);
"""


class SharedLimits:
    def __init__(self, path: str | Path, worker: int | None = None) -> None:
        self.db = SQLiteDatabase(path, "OFF")
        self.db.create(SCHEMA)
        self.worker = os.getpid() if worker is None else worker

    def bucket(self, key: tuple[str, str], change: Callable[[Bucket | None], Bucket]) -> Bucket:
        with self.db.write() as tx:
            row = tx.one("SELECT tokens, at FROM rate_buckets WHERE tenant = ? AND user_name = ?", key)
            tokens, at = change((float(row[0]), float(row[1])) if row else None)
            tx.execute(
                "INSERT INTO rate_buckets (tenant, user_name, tokens, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, user_name) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
                (*key, tokens, at),
            )
        return tokens, at

    def open_connection(self, user: str, check: Callable[[int, int], None]) -> None:
        with self.db.write() as tx:
            total = tx.one("SELECT COALESCE(SUM(n), 0) FROM open_connections")
            mine = tx.one("SELECT COALESCE(SUM(n), 0) FROM open_connections WHERE user_name = ?", (user,))
            check(int(total[0]) if total else 0, int(mine[0]) if mine else 0)  # raising: nothing counted
            tx.execute(
                "INSERT INTO open_connections (worker, user_name, n) VALUES (?, ?, 1) "
                "ON CONFLICT (worker, user_name) DO UPDATE SET n = n + 1",
                (self.worker, user),
            )

    def close_connection(self, user: str) -> None:
        with self.db.write() as tx:
            tx.execute(
                "UPDATE open_connections SET n = n - 1 WHERE worker = ? AND user_name = ?",
                (self.worker, user),
            )
            tx.execute("DELETE FROM open_connections WHERE n <= 0")

    def failures(self, kind: str, key: str, since: float) -> list[float]:
        rows = self.db.query(
            "SELECT at FROM login_failures WHERE kind = ? AND key = ? AND at > ?", (kind, key, since)
        )
        return [float(at) for (at,) in rows]

    def add_failure(self, kind: str, key: str, at: float, since: float) -> None:
        with self.db.write() as tx:
            tx.execute("DELETE FROM login_failures WHERE at <= ?", (since,))
            tx.execute("INSERT INTO login_failures (kind, key, at) VALUES (?, ?, ?)", (kind, key, at))

    def forget_worker(self, worker: int) -> None:
        """A worker process ended: its connections are no longer open."""
        with self.db.write() as tx:
            tx.execute("DELETE FROM open_connections WHERE worker = ?", (worker,))

    def close(self) -> None:
        self.db.close()
