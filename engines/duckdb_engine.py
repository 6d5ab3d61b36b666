"""The embedded DuckDB engine: datasets' files scanned where they lie, the engine locked down.

Each file dataset is a view over its Parquet/CSV file, glob or folder, read at query time (nothing
is copied, so start-up time and memory do not grow with the data). Before any query runs, DuckDB
may read exactly the declared sources (`allowed_paths` / `allowed_directories`), every other
external access is disabled and the configuration locked, so even SQL we generate cannot read
other files, load extensions or change settings. Queries run on a per-call cursor in a worker
thread (`engines.running`): a cancel, a statement timeout or a disconnect interrupts them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from engines.base import EngineUnavailable, Rows, VersionedData, parameter_mismatch
from engines.running import Limits, RunningQuery, run_interruptible
from engines.sources import FileSource
from engines.unit_check import UniqueUnits, repeated_units_sql
from pgerrors import InternalError
from rewriter.plan import Plan
from rewriter.policy import Policy

log = logging.getLogger(__name__)

LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


class DuckDBEngine(VersionedData):
    dialect = "duckdb"

    def __init__(
        self,
        policy: Policy,
        bounding_secret: str,
        datasets: Sequence[str] | None = None,
        memory_limit: str | None = None,
    ) -> None:
        con = duckdb.connect(":memory:")
        self._policy = policy
        # The key of contribution bounding's hash; SQL refers to the macro, never to the value.
        con.execute(f"CREATE MACRO privacylens_secret() AS '{bounding_secret:s}'")
        names = list(policy.datasets) if datasets is None else list(datasets)
        self._sources: dict[str, FileSource] = {}
        for name in names:
            source = FileSource.of(policy.source_path(name), policy.datasets[name].format)
            if not source.files():
                raise FileNotFoundError(f"dataset {name}: source {source.pattern} matches no file")
            con.execute(f"CREATE VIEW {_quoted(name)} AS SELECT * FROM {source.scan_sql()}")
            self._sources[name] = source
        files = sorted({s.pattern for s in self._sources.values() if s.allowed_directory is None})
        folders = sorted({s.allowed_directory for s in self._sources.values() if s.allowed_directory})
        spill = tempfile.mkdtemp(prefix="privacylens-duckdb-")  # where large aggregates spill to disk
        self._cleanup = weakref.finalize(self, shutil.rmtree, spill, True)
        con.execute(f"SET temp_directory = '{spill}'")
        if memory_limit:
            try:
                con.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error as err:
                raise EngineUnavailable(f"duckdb_memory_limit {memory_limit!r}: {err}") from err
        con.execute("SET allowed_paths = ?", [files])
        con.execute("SET allowed_directories = ?", [folders])
        for statement in LOCKDOWN:
            con.execute(statement)
        self._con = con
        self._units = UniqueUnits(self._repeated_units, self._version)
        self._ranges: dict[tuple[str, str], tuple[dt.datetime | None, ...]] = {}  # per file version
        declared = [n for n in names if policy.datasets[n].one_row_per_unit]
        for name in declared:
            self._units.watch(name, self._sources[name].size())

    @property
    def unique_units(self) -> frozenset[str]:
        return self._units.datasets

    def _repeated_units(self, name: str) -> int:
        cursor = self._con.cursor()
        try:
            return duplicate_units(cursor, name, self._policy.datasets[name].privacy_unit)
        finally:
            cursor.close()

    def _version(self, dataset: str) -> str:
        return self._sources[dataset].version()

    def _size(self, dataset: str) -> int | None:
        return self._sources[dataset].size()

    def render(self, plan: Plan) -> str:
        return plan.engine_sql

    def bucket_versions(
        self, dataset: str, column: str, spans: Sequence[tuple[dt.datetime, dt.datetime]], version: str
    ) -> list[str]:
        """Per span, a fingerprint of the files that hold rows of `column` in it: each file's name,
        size, time and inode with its range of `column` (read once per file version). A file added
        with later rows, or one rewritten elsewhere, leaves other spans' versions as they were."""
        source = self._sources[dataset]
        files = []
        for name in source.files():
            stat = Path(name).stat()
            key = f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"
            if (key, column) not in self._ranges:
                self._ranges[(key, column)] = self._range(source, name, column)
            files.append((key, self._ranges[(key, column)]))
        versions = []
        for start, end in spans:
            digest = hashlib.blake2b(digest_size=16)
            for key, (low, high) in files:
                if low is not None and high is not None and low < end and high >= start:
                    digest.update(key.encode() + b"\n")
            versions.append(digest.hexdigest())
        return versions

    def _range(
        self, source: FileSource, file: str, column: str
    ) -> tuple[dt.datetime | None, dt.datetime | None]:
        cursor = self._con.cursor()
        try:
            quoted = _quoted(column)
            row = cursor.execute(
                f"SELECT min({quoted}), max({quoted}) FROM {source.scan_sql(file)}"
            ).fetchone()
        finally:
            cursor.close()
        low, high = row if row else (None, None)
        return _moment(low), _moment(high)

    async def check(self, plan: Plan, params: Sequence[Any]) -> None:
        if not params:
            return  # literal plans bind (tests/test_plans_never_fail.py)

        def explain() -> None:
            cursor = self._con.cursor()
            try:
                cursor.execute(f"EXPLAIN {self.render(plan)}", list(params)).fetchall()
            finally:
                cursor.close()

        try:
            await asyncio.to_thread(explain)
        except (duckdb.BinderException, duckdb.ConversionException) as err:
            log.info("parameters do not bind: %s", err)
            raise parameter_mismatch() from None

    async def run(self, plan: Plan, params: Sequence[Any], running: RunningQuery, limits: Limits) -> Rows:
        return await self.run_sql(self.render(plan), params, running, limits)

    async def run_sql(self, sql: str, params: Sequence[Any], running: RunningQuery, limits: Limits) -> Rows:
        cursor = self._con.cursor()
        try:
            return await run_interruptible(cursor, lambda: _fetch(cursor, sql, list(params)), running, limits)
        except duckdb.Error as err:
            # Never echo engine text: it could quote data. The log keeps the detail for admins.
            log.warning("engine error: %s", err)
            raise InternalError("the query engine failed to run this query") from err
        finally:
            cursor.close()

    def close(self) -> None:
        self._con.close()
        self._cleanup()


def _fetch(cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Rows:
    result = cursor.execute(sql, params)
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()


def _moment(value: dt.date | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime(value.year, value.month, value.day)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duplicate_units(con: duckdb.DuckDBPyConnection, table: str, unit: str) -> int:
    """How many privacy units have more than one row in `table`."""
    sql = repeated_units_sql(exp.Table(this=exp.to_identifier(table, quoted=True)), unit, "duckdb")
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
