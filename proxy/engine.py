"""The embedded DuckDB engine, locked down before any query runs.

Each dataset's Parquet/CSV source is loaded into an in-memory table at start-up; then external
access is disabled and the configuration locked, so even SQL we generate cannot read files, load
extensions or change settings. Queries run on a per-call cursor in a worker thread
(`proxy.running`), so the event loop keeps serving other clients and a cancel, a statement timeout
or a disconnect can interrupt them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from pgerrors import InternalError
from proxy.running import Limits, RunningQuery, run_interruptible
from rewriter.policy import Policy

log = logging.getLogger(__name__)

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
        unique: set[str] = set()
        for name, dataset in policy.datasets.items():
            path = policy.source_path(name)
            _load(con, name, path)
            self._versions[name] = content_version(path)
            if dataset.one_row_per_unit:
                duplicates = duplicate_units(con, name, dataset.privacy_unit)
                if duplicates:
                    log.warning(
                        "dataset %s declares one_row_per_unit but %d privacy units have several rows: "
                        "its queries bound each unit to one row in the plan",
                        name, duplicates,
                    )  # fmt: skip
                else:
                    unique.add(name)
        self.unique_units = frozenset(unique)
        for statement in LOCKDOWN:
            con.execute(statement)
        self._con = con

    def data_version(self, dataset: str) -> str:
        """A fingerprint of the loaded file's content: cached answers never outlive their data."""
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


def content_version(path: Path) -> str:
    """BLAKE2b of the file's bytes (the file is read whole to load it anyway; about 1 GB/s here)."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def duplicate_units(con: duckdb.DuckDBPyConnection, table: str, unit: str) -> int:
    """How many privacy units have more than one row in `table`."""
    quoted_table = '"' + table.replace('"', '""') + '"'
    quoted_unit = '"' + unit.replace('"', '""') + '"'
    row = con.execute(
        f"SELECT COUNT(*) FROM (SELECT {quoted_unit} FROM {quoted_table} WHERE {quoted_unit} IS NOT NULL "
        f"GROUP BY {quoted_unit} HAVING COUNT(*) > 1)"
    ).fetchone()
    return int(row[0]) if row else 0


def _load(con: duckdb.DuckDBPyConnection, name: str, path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"dataset {name}: source {path} does not exist")
    reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv_auto"
    table = '"' + name.replace('"', '""') + '"'
    con.execute(f"CREATE TABLE {table} AS SELECT * FROM {reader}(?)", [str(path)])
