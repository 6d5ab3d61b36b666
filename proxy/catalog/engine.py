"""The data-less DuckDB that answers catalog queries and statements that read no data.

It holds the emulated catalog (schemas `pgc` for pg_catalog and `pgi` for information_schema) and
macros for the `pg_*` functions clients call; no dataset is ever loaded into it. It runs with
external access disabled and its configuration locked, like the data engine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from engines.duckdb_engine import LOCKDOWN
from engines.running import Limits, RunningQuery, run_interruptible
from pgerrors import (
    FeatureNotAllowed,
    InternalError,
    InvalidTextRepresentation,
    PgError,
    StatementTooComplex,
    UndefinedObject,
)
from privacy import postprocess
from proxy.catalog.contents import OWNER_NAME, relations, type_name_sql
from proxy.catalog.system_views import SCHEMA as SYSTEM_SCHEMA
from proxy.catalog.system_views import VIEWS, SystemViews, create_tables
from rewriter.policy import Policy

log = logging.getLogger(__name__)

_ALWAYS_TRUE = ["pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible"]
_PRIVILEGES = ["has_table_privilege", "has_schema_privilege", "has_database_privilege",
               "has_column_privilege", "has_any_column_privilege", "has_function_privilege",
               "has_sequence_privilege", "has_type_privilege"]  # fmt: skip


def _macros() -> list[str]:
    none = "CAST(NULL AS VARCHAR)"
    out = [
        f"CREATE MACRO pg_get_userbyid(o) AS '{OWNER_NAME}'",
        "CREATE MACRO pg_encoding_to_char(e) AS 'UTF8'",
        f"CREATE MACRO format_type(t, m) AS CASE t {type_name_sql()} ELSE '???' END",
        f"CREATE MACRO pg_get_expr(e, r) AS {none}, (e, r, p) AS {none}",
        "CREATE MACRO col_description(r, n) AS "
        "(SELECT max(description) FROM pgc.pg_description WHERE objoid = r AND objsubid = n)",
        "CREATE MACRO obj_description(o) AS "
        "(SELECT max(description) FROM pgc.pg_description WHERE objoid = o AND objsubid = 0), "
        "(o, c) AS (SELECT max(description) FROM pgc.pg_description WHERE objoid = o AND objsubid = 0)",
        f"CREATE MACRO shobj_description(o, c) AS {none}",
        f"CREATE MACRO pg_get_indexdef(i) AS {none}, (i, c, p) AS {none}",
        f"CREATE MACRO pg_get_constraintdef(c) AS {none}, (c, p) AS {none}",
        f"CREATE MACRO pg_get_viewdef(v) AS {none}, (v, p) AS {none}",
        f"CREATE MACRO pg_get_partkeydef(r) AS {none}",
        f"CREATE MACRO pg_get_serial_sequence(t, c) AS {none}",
        f"CREATE MACRO pg_get_triggerdef(t) AS {none}, (t, p) AS {none}",
        f"CREATE MACRO pg_get_statisticsobjdef_columns(o) AS {none}",
        "CREATE MACRO pg_relation_size(r) AS 0, (r, f) AS 0",  # sizes would reveal row counts
        "CREATE MACRO pg_total_relation_size(r) AS 0",
        "CREATE MACRO pg_table_size(r) AS 0",
        "CREATE MACRO pg_indexes_size(r) AS 0",
        "CREATE MACRO pg_database_size(d) AS 0",
        "CREATE MACRO pg_size_pretty(s) AS '0 bytes'",
        "CREATE MACRO pg_is_other_temp_schema(n) AS false",
        "CREATE MACRO pg_relation_is_publishable(r) AS false",
        f"CREATE MACRO pg_get_function_result(f) AS {none}",
        f"CREATE MACRO pg_get_function_arguments(f) AS {none}",
        f"CREATE MACRO pg_get_function_identity_arguments(f) AS {none}",
        f"CREATE MACRO pg_get_ruledef(r) AS {none}, (r, p) AS {none}",
        "CREATE MACRO pg_my_temp_schema() AS 0",
        "CREATE MACRO pg_is_in_recovery() AS false",
        "CREATE MACRO pg_tablespace_location(t) AS ''",
        "CREATE MACRO txid_current() AS 1",
        "CREATE MACRO pg_char_to_encoding(e) AS 6",
        # System catalogs keep PostgreSQL's fixed OIDs (pg_description.classoid = 'pg_class'::regclass).
        "CREATE MACRO regclass_oid(n) AS CASE regexp_replace(lower(n), '^pg_catalog\\.', '') "
        "WHEN 'pg_class' THEN 1259 WHEN 'pg_attribute' THEN 1249 WHEN 'pg_type' THEN 1247 "
        "WHEN 'pg_proc' THEN 1255 WHEN 'pg_namespace' THEN 2615 WHEN 'pg_constraint' THEN 2606 "
        "WHEN 'pg_database' THEN 1262 ELSE (SELECT max(oid) FROM pgc.pg_class "
        "WHERE relname = lower(regexp_replace(trim(n, '\"'), '^(public|\"public\")\\.', ''))) END",
        "CREATE MACRO regclass_name(o) AS coalesce((SELECT max(relname) FROM pgc.pg_class WHERE oid = o), "
        "CAST(o AS VARCHAR))",
        "CREATE MACRO to_regtype(n) AS (SELECT max(oid) FROM pgc.pg_type WHERE typname = n)",
        "CREATE MACRO to_regclass(n) AS regclass_oid(n)",
        "CREATE MACRO array_upper(a, d) AS CASE WHEN len(a) = 0 THEN NULL ELSE len(a) END",
        "CREATE MACRO array_lower(a, d) AS CASE WHEN len(a) = 0 THEN NULL ELSE 1 END",
        "CREATE MACRO parse_ident(s) AS list_transform(string_split(s, '.'), lambda p: trim(p, '\"')), "
        "(s, strict) AS list_transform(string_split(s, '.'), lambda p: trim(p, '\"'))",
        "CREATE MACRO quote_ident(s) AS '\"' || replace(s, '\"', '\"\"') || '\"'",
        "CREATE MACRO _pg_expandarray(a) AS TABLE SELECT unnest(a) AS x, unnest(range(1, len(a) + 1)) AS n",
        "CREATE MACRO pg_get_keywords() AS TABLE SELECT * FROM (VALUES ('all', 'R', 'reserved'), "
        "('select', 'R', 'reserved'), ('from', 'R', 'reserved')) t(word, catcode, catdesc)",
    ]
    out += [f"CREATE MACRO {name}(o) AS true" for name in _ALWAYS_TRUE]
    out += [
        f"CREATE MACRO {name}(a) AS true, (a, b) AS true, (a, b, c) AS true, (a, b, c, d) AS true"
        for name in _PRIVILEGES
    ]
    return out


# The data-less engine gets no directory to spill to or read from and a small memory budget: a
# statement such as `SELECT sum(x) FROM range(1e11)` is stopped by its time cap, never by the host.
CATALOG_LIMITS = ("SET temp_directory = ''", "SET memory_limit = '512MB'", "SET threads = 1")
MAX_ROWS = 10_000
MAX_SECONDS = 10.0


class CatalogEngine:
    def __init__(self, policy: Policy, ledger: str | Path | None = None) -> None:
        con = duckdb.connect(":memory:")
        con.execute("CREATE SCHEMA pgc")
        con.execute("CREATE SCHEMA pgi")
        for relation in relations(policy):
            columns = ", ".join(f'"{name}" {kind}' for name, kind in relation.columns)
            con.execute(f'CREATE TABLE {relation.schema}."{relation.name}" ({columns})')
            if relation.rows:
                marks = ", ".join("?" for _ in relation.columns)
                con.executemany(
                    f'INSERT INTO {relation.schema}."{relation.name}" VALUES ({marks})',
                    [list(row) for row in relation.rows],
                )
        for macro in _macros():
            con.execute(macro)
        _register_helpers(con)
        create_tables(con)
        for statement in CATALOG_LIMITS + LOCKDOWN:
            con.execute(statement)
        self._con = con
        self.relation_names = {(r.schema, r.name) for r in relations(policy)} | {
            (SYSTEM_SCHEMA, name) for name in VIEWS
        }
        self.system_views = SystemViews(con, ledger, policy) if ledger is not None else None

    def describe(self, sql: str, params: Sequence[Any]) -> list[tuple[str, str]]:
        """[(column name, DuckDB type)] from DuckDB's lazy relation: planned, never executed."""
        cursor = self._con.cursor()
        try:
            relation = cursor.sql(sql, params=list(params))
            return [
                (str(name), str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)
            ]
        except duckdb.Error as err:
            raise _as_pg_error(err) from err
        finally:
            cursor.close()

    async def run(
        self, sql: str, params: Sequence[Any], running: RunningQuery, limits: Limits
    ) -> tuple[list[tuple[str, str]], list[tuple]]:
        """([(column name, DuckDB type)], rows), in a worker thread that a cancel can interrupt.

        At most MAX_ROWS rows and MAX_SECONDS seconds, whatever the session's statement_timeout.
        No DuckDB text reaches the client (it can name files and settings).
        """
        cursor = self._con.cursor()

        def work() -> tuple[list[tuple[str, str]], list[tuple]]:
            result = cursor.execute(sql, list(params))
            columns = [(str(d[0]), str(d[1])) for d in result.description or []]
            rows = result.fetchmany(MAX_ROWS + 1)
            if len(rows) > MAX_ROWS:
                raise StatementTooComplex(
                    f"this statement returns more than {MAX_ROWS} rows, the most a statement that "
                    "reads no data may return",
                    hint="Add a LIMIT, or ask for fewer rows.",
                )
            return columns, rows

        seconds = min(limits.timeout_seconds or MAX_SECONDS, MAX_SECONDS)
        capped = Limits(timeout_seconds=seconds, disconnected=limits.disconnected)
        try:
            return await run_interruptible(cursor, work, running, capped)
        except duckdb.Error as err:
            raise _as_pg_error(err) from err
        finally:
            cursor.close()


def _register_helpers(con: duckdb.DuckDBPyConnection) -> None:
    """Free post-processing helpers over released values (privacy.postprocess), as SQL functions."""
    double = duckdb.sqltype("DOUBLE")
    con.create_function(
        "dp_prob_greater",
        lambda a, al, ah, b, bl, bh: postprocess.prob_greater(a, al, ah, b, bl, bh),
        [double] * 6,
        double,
    )
    con.create_function(
        "dp_interval_at",
        lambda v, lo, hi, now, new: list(postprocess.interval_at(v, lo, hi, now, new)),
        [double] * 5,
        duckdb.list_type(double),
    )
    con.create_function(
        "dp_hypothetical",
        lambda v, lo, hi, n: postprocess.hypothetical(v, lo, hi, int(n)),
        [double, double, double, duckdb.sqltype("INTEGER")],
        duckdb.list_type(double),
        side_effects=True,
    )


def _as_pg_error(err: duckdb.Error) -> PgError:
    """Plain words and a code; never DuckDB's text, which can name files, settings and paths."""
    log.info("catalog engine: %s", err)  # for admins
    if isinstance(err, duckdb.CatalogException):
        return UndefinedObject(
            "this query names a relation, function or type that PrivacyLens does not emulate",
            hint="PrivacyLens answers the pg_catalog and information_schema queries PostgreSQL clients send.",
        )
    if isinstance(err, (duckdb.BinderException, duckdb.ParserException)):
        return FeatureNotAllowed(
            "this statement is not supported on data-less queries",
            hint="Use PostgreSQL functions and casts on literals, or ask a DP aggregate over a dataset.",
        )
    if isinstance(err, (duckdb.ConversionException, duckdb.InvalidInputException)):
        return InvalidTextRepresentation("a value in this statement cannot be converted to its type")
    if isinstance(err, duckdb.OutOfMemoryException):
        return StatementTooComplex(
            "this statement needs more memory than a statement that reads no data may use",
            hint="Ask for fewer rows or smaller values.",
        )
    return InternalError("this statement could not be run")
