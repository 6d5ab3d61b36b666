"""The embedded DuckDB engine, locked down before any query runs.

Each dataset's Parquet/CSV source is loaded into an in-memory table at start-up; then external
access is disabled and the configuration locked, so even SQL we generate cannot read files, load
extensions or change settings. Queries run on a per-call cursor in a worker thread so the event loop
keeps serving other clients; the cursor is kept so a cancel can interrupt it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from pgerrors import InternalError, QueryCanceled
from rewriter.policy import Policy

LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


class DuckDBEngine:
    def __init__(self, policy: Policy) -> None:
        con = duckdb.connect(":memory:")
        for name in policy.datasets:
            _load(con, name, policy.source_path(name))
        for statement in LOCKDOWN:
            con.execute(statement)
        self._con = con

    async def run(
        self, sql: str, params: Sequence[Any], running: RunningQuery
    ) -> tuple[list[str], list[tuple]]:
        cursor = self._con.cursor()
        running.attach(cursor)
        try:
            return await asyncio.to_thread(_fetch, cursor, sql, list(params))
        except duckdb.InterruptException as err:
            raise QueryCanceled("canceling statement due to user request") from err
        except duckdb.Error as err:
            # Never echo engine text: it could quote data. The log keeps the detail for admins.
            raise InternalError("the query engine failed to run this query") from err
        finally:
            running.detach()
            cursor.close()


class RunningQuery:
    """The cursor a session is running, so a cancel can interrupt it."""

    def __init__(self) -> None:
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def attach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursor = cursor

    def detach(self) -> None:
        with self._lock:
            self._cursor = None

    def interrupt(self) -> None:
        with self._lock:
            if self._cursor is not None:
                self._cursor.interrupt()


def _fetch(cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> tuple[list[str], list[tuple]]:
    result = cursor.execute(sql, params)
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()


def _load(con: duckdb.DuckDBPyConnection, name: str, path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"dataset {name}: source {path} does not exist")
    reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv_auto"
    table = '"' + name.replace('"', '""') + '"'
    con.execute(f"CREATE TABLE {table} AS SELECT * FROM {reader}(?)", [str(path)])
