"""Datasets that live in PostgreSQL tables: the clipped, contribution-bounded plan runs there.

The plan's sqlglot tree is rendered in the postgres dialect (QUALIFY becomes a subquery, TRY_CAST a
CAST the plan keeps total), its dataset name replaced by the policy's `table`, and the key of contribution
bounding's row hash (`rewriter.row_hash`) is a per-session setting (the secret never appears in SQL
text). Each statement runs in a read-only transaction with a statement timeout;
a cancel, timeout or disconnect sends PostgreSQL a cancel request. Only aggregates come back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from sqlglot import exp

from engines.base import EngineUnavailable, Rows, VersionedData, parameter_mismatch
from engines.render import onto, plain
from engines.running import Limits, RunningQuery, run_interruptible
from engines.unit_check import UniqueUnits, repeated_units_sql
from pgerrors import InternalError
from rewriter.plan import Plan
from rewriter.policy import Policy

log = logging.getLogger(__name__)
SECRET_SETTING = "privacylens.bounding_secret"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_dsn(template: str) -> str:
    """`${NAME}` in a dsn becomes the environment variable NAME (so secrets stay out of the policy).

    >>> os.environ["PL_DOCTEST_PW"] = "s3cret"
    >>> expand_dsn("postgresql://reader:${PL_DOCTEST_PW}@db/sales")
    'postgresql://reader:s3cret@db/sales'
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise EngineUnavailable(f"the dsn names the environment variable {name}, which is not set")
        return os.environ[name]

    return _VARIABLE.sub(value, template)


class _Cancel:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def interrupt(self) -> None:
        self._conn.cancel_safe(timeout=5.0)


class PostgresEngine(VersionedData):
    dialect = "postgres"

    def __init__(self, policy: Policy, bounding_secret: str, dsn: str, max_connections: int = 8) -> None:
        self._policy = policy
        self._tables: dict[str, exp.Table] = {}
        self._units = UniqueUnits(self._repeated_units, self._version)

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET DateStyle = ISO")  # dates render as the other engines render them
            conn.execute("SELECT set_config(%s, %s, false)", (SECRET_SETTING, bounding_secret))

        try:
            self._pool = ConnectionPool(
                expand_dsn(dsn), min_size=1, max_size=max_connections, configure=configure,
                kwargs={"autocommit": True}, open=True, timeout=30.0,
            )  # fmt: skip
            self._pool.wait(timeout=30.0)
        except psycopg.Error as err:
            raise EngineUnavailable(f"cannot connect to the PostgreSQL engine: {err}") from err
        except Exception as err:  # psycopg_pool.PoolTimeout
            raise EngineUnavailable(f"cannot connect to the PostgreSQL engine: {err}") from err

    def add(self, dataset: str) -> None:
        """Place a dataset on this engine: its table must hold the declared columns."""
        spec = self._policy.datasets[dataset]
        assert spec.table is not None
        table = exp.to_table(spec.table, dialect="postgres")
        columns = ", ".join(exp.column(c, quoted=True).sql("postgres") for c in spec.columns)
        with self._pool.connection() as conn:
            try:
                conn.execute(f"SELECT {columns} FROM {table.sql('postgres')} LIMIT 0")
                size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table.sql("postgres"),))
                row = size.fetchone()
            except psycopg.Error as err:
                raise EngineUnavailable(
                    f"dataset {dataset}: table {spec.table} cannot be read: {err}"
                ) from err
        self._tables[dataset] = table
        if spec.one_row_per_unit:
            self._units.watch(dataset, int(row[0]) if row else None)

    @property
    def unique_units(self) -> frozenset[str]:
        return self._units.datasets

    def _repeated_units(self, dataset: str) -> int:
        unit = self._policy.datasets[dataset].privacy_unit
        with self._pool.connection() as conn:
            row = conn.execute(repeated_units_sql(self._tables[dataset], unit, "postgres")).fetchone()
        return int(row[0]) if row else 0

    def render(self, plan: Plan) -> str:
        return _for_postgres(plan.engine_query, plan.dataset, self._tables[plan.dataset]).sql("postgres")

    def _version(self, dataset: str) -> str:
        """Changes with every committed insert, update, delete or rewrite of the table (PostgreSQL's
        statistics, which lag a commit by up to about a second)."""
        table = self._tables[dataset]
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT c.relfilenode, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_live_tup "
                "FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid "
                "WHERE c.oid = %s::regclass",
                (table.sql("postgres"),),
            ).fetchone()
        return "pg:" + ":".join(str(v) for v in (row or ()))

    async def check(self, plan: Plan, params: Sequence[Any]) -> None:
        if not params:
            return

        def explain() -> None:
            with self._pool.connection() as conn, conn.transaction(), psycopg.RawCursor(conn) as cursor:
                cursor.execute(f"EXPLAIN {self.render(plan)}", list(params))

        try:
            await asyncio.to_thread(explain)
        except (
            psycopg.errors.DatatypeMismatch,
            psycopg.errors.UndefinedFunction,
            psycopg.errors.AmbiguousFunction,
            psycopg.errors.IndeterminateDatatype,
            psycopg.errors.InvalidTextRepresentation,
            psycopg.errors.InvalidDatetimeFormat,
            psycopg.errors.NumericValueOutOfRange,
        ) as err:
            log.info("parameters do not bind: %s", err)
            raise parameter_mismatch() from None

    async def run(self, plan: Plan, params: Sequence[Any], running: RunningQuery, limits: Limits) -> Rows:
        sql = self.render(plan)
        conn = await asyncio.to_thread(self._pool.getconn)  # may wait for a free connection
        try:
            timeout_ms = int((limits.timeout_seconds or 0) * 1000)

            def work() -> Rows:
                with conn.transaction(), psycopg.RawCursor(conn) as cursor:
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, true)".replace("%s", "$1"),
                        [str(timeout_ms)],
                    )
                    cursor.execute(sql, list(params))
                    columns = [d.name for d in cursor.description or []]
                    return columns, [tuple(plain(v) for v in row) for row in cursor.fetchall()]

            return await run_interruptible(_Cancel(conn), work, running, limits)
        except psycopg.Error as err:
            log.warning("postgres engine error: %s", err)
            raise InternalError("the query engine failed to run this query") from err
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        self._pool.close()


def _for_postgres(tree: exp.Expression, dataset: str, table: exp.Table) -> exp.Expression:
    tree = onto(tree, dataset, table, exp.func("current_setting", exp.Literal.string(SECRET_SETTING)))
    for digest in list(
        tree.find_all(exp.MD5)
    ):  # hex digests order byte-wise, whatever the database's collation
        digest.replace(exp.Collate(this=digest.copy(), expression=exp.column("C", quoted=True)))
    for i, sub in enumerate(list(tree.find_all(exp.Subquery))):
        if not sub.alias and isinstance(sub.parent, exp.From):
            sub.set("alias", exp.TableAlias(this=exp.to_identifier(f"__s{i}")))
    return tree
