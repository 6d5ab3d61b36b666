"""Datasets on Spark, for data beyond one machine: the same plans, run as Spark SQL.

`engine: spark` with `master:` (`local[2]`, `spark://host:7077`, `yarn`, …) and either `source:`
(a Parquet or CSV file, glob or folder every executor can read) or `table:` (a catalog table). The
plan's sqlglot tree is rendered in the spark dialect (QUALIFY becomes a subquery), integer sums
are summed as DECIMAL(38,0) (Spark's ANSI mode would fail a BIGINT sum that overflows; DuckDB and
PostgreSQL widen it), parameters are bound as named arguments, and the key of contribution
bounding's row hash is a session variable (never in SQL text). Each engine has its own Spark
session (its own views and variables) on the process's one SparkContext. A cancel, statement
timeout or disconnect cancels the query's Spark jobs by tag, interrupting its tasks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from engines.base import EngineUnavailable, Rows, VersionedData, parameter_mismatch
from engines.render import onto, plain
from engines.running import Limits, RunningQuery, run_interruptible
from engines.sources import FileSource
from engines.unit_check import UniqueUnits, repeated_units_sql
from pgerrors import InternalError
from rewriter.plan import Plan
from rewriter.policy import Policy
from rewriter.types import PG_TO_DUCKDB, POLICY_TO_PG

log = logging.getLogger(__name__)
SECRET_VARIABLE = "privacylens_secret"


class _SharedContext:
    """A process has one SparkContext (one master); every engine gets its own session on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: Any = None
        self._master: str | None = None
        self._users = 0

    def session(self, master: str) -> Any:
        with self._lock:
            if self._root is not None and master != self._master:
                raise EngineUnavailable(
                    f"this proxy already runs Spark on {self._master}; one Spark master per proxy "
                    f"(dataset asks for {master})"
                )
            if self._root is None:
                self._root = _start(master)
                self._master = master
            self._users += 1
            return self._root.newSession()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._root is not None:
                self._root.stop()
                self._root, self._master = None, None


_CONTEXT = _SharedContext()


def _start(master: str) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise EngineUnavailable(
            "the Spark engine needs pyspark: pip install 'privacylens[spark]' (and Java 17)"
        ) from err
    builder = SparkSession.builder.appName("privacylens")
    if master.startswith("sc://"):
        raise EngineUnavailable(
            "Spark Connect (sc://) masters are not supported yet; give a cluster master "
            "(spark://…, yarn, k8s://…) or local[n]"
        )
    builder = builder.master(master)
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.ansi.enabled": "true",
        "spark.driver.memory": os.environ.get("PRIVACYLENS_SPARK_DRIVER_MEMORY", "1g"),
    }.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as err:  # Java missing, master unreachable: py4j / pyspark errors
        raise EngineUnavailable(f"cannot start Spark on {master}: {_first_line(err)}") from err
    session.sparkContext.setLogLevel("ERROR")  # engine errors are logged by the proxy, without data
    return session


class _Jobs:
    """A query's Spark jobs, by tag: interrupt() cancels them and interrupts their tasks."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.tag = f"privacylens-{uuid.uuid4().hex}"

    def interrupt(self) -> None:
        self._context.cancelJobsWithTag(self.tag)


class SparkEngine(VersionedData):
    dialect = "spark"

    def __init__(self, policy: Policy, bounding_secret: str, master: str) -> None:
        self._policy = policy
        self._spark = _CONTEXT.session(master)
        self._closed = False
        self._tables: dict[str, exp.Table] = {}
        self._sources: dict[str, FileSource] = {}
        self._units = UniqueUnits(self._repeated_units, self._version)
        try:
            self._spark.sql(f"DECLARE OR REPLACE VARIABLE {SECRET_VARIABLE} STRING")
            self._spark.sql(f"SET VAR {SECRET_VARIABLE} = :secret", args={"secret": bounding_secret})
        except Exception:
            self.close()
            raise

    def add(self, dataset: str) -> None:
        """Place a dataset on this engine: its files or table must hold the declared columns."""
        spec = self._policy.datasets[dataset]
        try:
            if spec.table is not None:
                table = exp.to_table(spec.table, dialect="spark")
                frame = self._spark.table(table.sql("spark"))
                self._tables[dataset] = table
            else:
                source = FileSource.of(self._policy.source_path(dataset), spec.format)
                if not source.files():
                    raise FileNotFoundError(f"dataset {dataset}: source {source.pattern} matches no file")
                frame = self._read(source, dataset)
                frame.createOrReplaceTempView(dataset)  # this engine's own session sees it
                self._sources[dataset] = source
                self._tables[dataset] = exp.Table(this=exp.to_identifier(dataset, quoted=True))
            missing = [c for c in spec.columns if c.lower() not in {f.lower() for f in frame.columns}]
        except (FileNotFoundError, EngineUnavailable):
            raise
        except Exception as err:
            raise EngineUnavailable(f"dataset {dataset}: Spark cannot read it: {_first_line(err)}") from err
        if missing:
            raise EngineUnavailable(f"dataset {dataset}: Spark finds no column {', '.join(missing)}")
        if spec.one_row_per_unit:
            files = self._sources.get(dataset)
            self._units.watch(dataset, files.size() if files is not None else None)

    @property
    def unique_units(self) -> frozenset[str]:
        return self._units.datasets

    def _read(self, source: FileSource, dataset: str) -> Any:
        reader = self._spark.read
        if source.hive and source.allowed_directory:
            reader = reader.option("basePath", source.allowed_directory)
        folder = source.pattern.endswith("/**/*.parquet") or source.pattern.endswith("/**/*.csv")
        path = source.allowed_directory if folder and source.hive else source.pattern
        if source.reader == "read_csv":  # text columns, found by header name, typed as declared
            return reader.csv(path, header=True).selectExpr(*self._typed_columns(dataset))
        return reader.parquet(path)

    def _typed_columns(self, dataset: str) -> list[str]:
        """The policy's columns as their declared types (a value that is not one becomes NULL)."""
        typed = []
        for name, column in self._policy.datasets[dataset].columns.items():
            spark_type = exp.DataType.build(PG_TO_DUCKDB[POLICY_TO_PG[column.type]], dialect="duckdb")
            quoted = exp.column(name, quoted=True).sql("spark")
            typed.append(f"try_cast({quoted} AS {spark_type.sql('spark')}) AS {quoted}")
        return typed

    def _repeated_units(self, dataset: str) -> int:
        unit = self._policy.datasets[dataset].privacy_unit
        (row,) = self._spark.sql(repeated_units_sql(self._tables[dataset], unit, "spark")).collect()
        return int(row[0])

    def render(self, plan: Plan) -> str:
        return _for_spark(plan.engine_query, plan.dataset, self._tables[plan.dataset]).sql("spark")

    def _version(self, dataset: str) -> str:
        """Local files: their names, sizes and times. Catalog tables: the files Spark reads for them
        (Spark writes new file names on every insert or overwrite)."""
        if dataset in self._sources:
            return self._sources[dataset].version()
        table = self._tables[dataset].sql("spark")
        self._spark.catalog.refreshTable(table)
        files = sorted(self._spark.table(table).inputFiles())
        return "spark:" + hashlib.blake2b("\n".join(files).encode(), digest_size=16).hexdigest()

    async def check(self, plan: Plan, params: Sequence[Any]) -> None:
        """Spark analyses a statement when it is created (no job runs): a type error shows there."""
        if not params:
            return
        args = {f"p{i + 1}": value for i, value in enumerate(params)}
        from pyspark.errors import AnalysisException

        try:
            await asyncio.to_thread(self._spark.sql, self.render(plan), args=args)
        except AnalysisException as err:
            log.info("parameters do not bind: %s", err)
            raise parameter_mismatch() from None

    async def run(self, plan: Plan, params: Sequence[Any], running: RunningQuery, limits: Limits) -> Rows:
        sql = self.render(plan)
        args = {f"p{i + 1}": value for i, value in enumerate(params)}
        context = self._spark.sparkContext
        jobs = _Jobs(context)

        def work() -> Rows:
            context.addJobTag(jobs.tag)  # job tags are per thread: this query's jobs only
            context.setInterruptOnCancel(True)
            try:
                frame = self._spark.sql(sql, args=args)
                return list(frame.columns), [tuple(plain(v) for v in row) for row in frame.collect()]
            finally:
                context.removeJobTag(jobs.tag)

        try:
            return await run_interruptible(jobs, work, running, limits)
        except Exception as err:
            if running.interrupted or not _is_spark_error(err):
                raise
            log.warning("spark engine error: %s", err)
            raise InternalError("the query engine failed to run this query") from err

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _CONTEXT.release()


def _is_spark_error(err: BaseException) -> bool:
    module = type(err).__module__
    return module.startswith(("pyspark", "py4j"))


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _for_spark(tree: exp.Expression, dataset: str, table: exp.Table) -> exp.Expression:
    tree = onto(tree, dataset, table, exp.column(SECRET_VARIABLE, table="session", db="system"))
    for node in list(tree.find_all(exp.Parameter)):
        node.replace(exp.Placeholder(this=f"p{int(node.this.this)}"))
    for extract in list(tree.find_all(exp.Extract)):  # Spark's names for two date parts
        part = extract.this.name.upper()
        if part == "ISODOW":
            extract.set("this", exp.var("DOW_ISO"))
        elif part == "EPOCH":  # exact: whole microseconds over a decimal
            moment = exp.cast(extract.expression.copy(), exp.DataType.build("TIMESTAMPLTZ"))
            micros = exp.Anonymous(this="unix_micros", expressions=[moment])
            extract.replace(exp.Div(this=micros, expression=exp.Literal.number("1000000.0")))
    for total in list(tree.find_all(exp.Sum)):  # the plan's sums are of fixed-point integers
        total.set("this", exp.cast(total.this, exp.DataType.build("DECIMAL(38, 0)")))
    return tree
