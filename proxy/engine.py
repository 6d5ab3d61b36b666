"""The embedded DuckDB engine, locked down before any query runs.

Each dataset's Parquet/CSV source is loaded into an in-memory table at start-up; then external
access is disabled and the configuration locked, so even SQL we generate cannot read files, load
extensions or change settings. Queries run on a per-call cursor in a worker thread
(`proxy.running`), so the event loop keeps serving other clients and a cancel, a statement timeout
or a disconnect can interrupt them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from pgerrors import InternalError
from proxy.running import Limits, RunningQuery, run_interruptible
from rewriter.policy import Policy

LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


class DuckDBEngine:
    def __init__(self, policy: Policy, bounding_secret: str) -> None:
        con = duckdb.connect(":memory:")
        # The key of contribution bounding's hash; SQL refers to the macro, never to the value.
        con.execute(f"CREATE MACRO privacylens_secret() AS '{bounding_secret:s}'")
        self._versions: dict[str, str] = {}
        for name in policy.datasets:
            path = policy.source_path(name)
            _load(con, name, path)
            stat = path.stat()
            self._versions[name] = hashlib.sha256(
                f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
            ).hexdigest()[:16]
        for statement in LOCKDOWN:
            con.execute(statement)
        self._con = con

    def data_version(self, dataset: str) -> str:
        """Changes when the source file changes: cached answers never outlive their data."""
        return self._versions[dataset]

    async def run(
        self, sql: str, params: Sequence[Any], running: RunningQuery, limits: Limits
    ) -> tuple[list[str], list[tuple]]:
        cursor = self._con.cursor()
        try:
            return await run_interruptible(cursor, lambda: _fetch(cursor, sql, list(params)), running, limits)
        except duckdb.Error as err:
            # Never echo engine text: it could quote data. The log keeps the detail for admins.
            raise InternalError("the query engine failed to run this query") from err
        finally:
            cursor.close()


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
