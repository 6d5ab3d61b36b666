"""Statements that read no private data: SELECT without FROM, and catalog queries.

A SELECT qualifies when every relation it reads is a pg_catalog / information_schema relation (or a
CTE or allowed table function) and none is a dataset. It is rewritten for the data-less catalog
DuckDB (`proxy.catalog`): catalog relations move to schemas `pgc` / `pgi`, PostgreSQL-only syntax
(`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, `pg_catalog.f()`) becomes DuckDB SQL, and
session functions (version(), current_user, current_setting('x'), ...) become literals.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from pgerrors import FeatureNotAllowed, UndefinedObject
from rewriter.tree import parameter_index, parameters
from rewriter.types import PgType

SCHEMAS = {"pg_catalog": "pgc", "information_schema": "pgi", "privacylens": "privacylens"}

# Session functions → the name the session's lookup answers to (also the output column name).
SESSION_FUNCTIONS: dict[type[exp.Expression], str] = {
    exp.CurrentVersion: "version",
    exp.CurrentDatabase: "current_database",
    exp.CurrentCatalog: "current_database",
    exp.CurrentUser: "current_user",
    exp.SessionUser: "session_user",
    exp.CurrentSchema: "current_schema",
}
SESSION_ANONYMOUS = frozenset({"pg_backend_pid", "current_setting", "version", "current_database",
                               "current_user", "session_user", "current_schema", "inet_server_port",
                               "inet_server_addr", "pg_postmaster_start_time", "user"})  # fmt: skip

TABLE_FUNCTIONS = frozenset({"generate_series", "unnest", "_pg_expandarray", "pg_get_keywords",
                             "generate_subscripts", "range"})  # fmt: skip

# Never callable, even on a data-less engine (defence in depth).
DENIED_PREFIXES = ("duckdb_", "pragma_", "read_", "glob", "getenv", "sniff_", "parquet_", "query", "load",
                   "install", "which_secret", "icu_", "enable_", "disable_", "checkpoint")  # fmt: skip

DUCKDB_CAST = {"int8": "BIGINT", "int4": "INTEGER", "float8": "DOUBLE", "numeric": "DOUBLE",
               "text": "VARCHAR", "bool": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP"}  # fmt: skip

# PostgreSQL functions with a DuckDB twin of another name (same arguments).
_RENAMED_FUNCTIONS = {"json_build_object": "json_object", "jsonb_build_object": "json_object",
                      "json_build_array": "json_array", "jsonb_build_array": "json_array",
                      "to_jsonb": "to_json", "pg_typeof": "typeof"}  # fmt: skip

_T = exp.DataType.Type
_CAST_PARAMETER_TYPES: dict[exp.DataType.Type, PgType] = {
    _T.INT: "int4", _T.BIGINT: "int8", _T.SMALLINT: "int4", _T.DOUBLE: "float8", _T.FLOAT: "float8",
    _T.DECIMAL: "numeric", _T.BOOLEAN: "bool", _T.DATE: "date", _T.TIMESTAMP: "timestamp",
    _T.TIMESTAMPTZ: "timestamp", _T.TEXT: "text", _T.VARCHAR: "text",
}  # fmt: skip

_REGEX_OPERATORS = {"~": (False, False), "~*": (False, True), "!~": (True, False), "!~*": (True, True)}

Lookup = Callable[[str, list[str]], "str | int | list[str] | None"]


@dataclass(frozen=True)
class CatalogQuery:
    sql: str  # DuckDB SQL for the catalog engine; output names are PostgreSQL's, as aliases
    parameter_types: tuple[PgType, ...]
    system_views: bool = False  # reads privacylens.* views (refreshed from the ledger first)


def reads_no_data(
    tree: exp.Expression, catalog: Collection[tuple[str, str]], datasets: Collection[str]
) -> bool:
    """True when every relation `tree` reads is a catalog relation, a CTE or an allowed table function."""
    if not isinstance(tree, exp.Query):
        return False
    for table in tree.find_all(exp.Table):
        if _table_function(table) is not None:
            continue
        name, schema = table.name.lower(), table.db.lower()
        if table.catalog:
            return False
        if schema in SCHEMAS:
            continue
        if schema or name in datasets:
            return False
        if not refers_to_cte(table) and (SCHEMAS["pg_catalog"], name) not in catalog:
            return False
    return True


def refers_to_cte(table: exp.Table) -> bool:
    """Whether an unqualified relation name means a CTE at this point of the statement.

    Resolved by scope, as the engine does, never by the name alone: a CTE is visible in the body of
    its own WITH and in the CTEs after it (in itself only when the WITH is RECURSIVE), not outside
    the query that defines it. So `FROM (WITH pg_settings AS (...) SELECT ...) s, pg_settings d`
    has one CTE reference and one catalog relation, which must then be one the catalog serves.

    >>> import sqlglot
    >>> tree = sqlglot.parse_one("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t d")
    >>> [(x.alias, refers_to_cte(x)) for x in tree.find_all(exp.Table) if x.name == "t"]
    [('d', False), ('', True)]
    """
    if table.db or table.catalog:
        return False
    name = table.name.lower()
    below: exp.Expression | None = None  # the node `child` was reached from
    child: exp.Expression = table
    parent = table.parent
    while parent is not None:
        with_ = parent.args.get("with_") if isinstance(parent, exp.Query) else None
        if with_ is not None:
            ctes = list(with_.expressions)
            # Reached through this WITH: `below` is the CTE the reference sits in, which sees only
            # the CTEs before it (and itself when RECURSIVE); the query's body sees them all.
            if child is with_:
                inside = next(i for i, cte in enumerate(ctes) if cte is below)
                ctes = ctes[: inside + (1 if with_.args.get("recursive") else 0)]
            if any(cte.alias_or_name.lower() == name for cte in ctes):
                return True
        below, child, parent = child, parent, parent.parent
    return False


def plan_catalog(
    tree: exp.Query,
    lookup: Lookup,
    declared: tuple[str | None, ...],
    catalog: Collection[tuple[str, str]],
    views: Mapping[str, str] | None = None,
) -> CatalogQuery:
    """DuckDB SQL for the catalog engine. `views` maps "schema.name" to the SQL that replaces the
    relation (the system views an analyst reads, restricted to their own rows)."""
    tree = tree.copy()
    first = tree
    while isinstance(first, exp.SetOperation):  # a UNION takes its column names from its first SELECT
        first = first.this
    if isinstance(first, exp.Select):
        first.set(
            "expressions",
            [
                item
                if isinstance(item, (exp.Alias, exp.Star))
                or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))
                else exp.alias_(item, exp.to_identifier(_output_name(item), quoted=True))
                for item in first.expressions
            ],
        )

    def rewrite(node: exp.Expression) -> exp.Expression:
        if (  # pg_catalog.f(...): its arguments were rewritten first, so f may now be a literal
            isinstance(node, exp.Dot)
            and isinstance(node.this, (exp.Identifier, exp.Var))
            and node.this.name.lower() in SCHEMAS
        ):
            return node.expression
        if isinstance(node, exp.Table):
            return _relation(node, catalog, views or {})
        if isinstance(node, exp.Column) and node.args.get("db") is not None:
            node.set("db", None)  # pg_catalog.pg_class.relname → pg_class.relname
            node.set("catalog", None)
            return node
        if isinstance(node, exp.Collate):
            return node.this
        if isinstance(node, exp.Operator):
            return _operator(node)
        if isinstance(node, exp.Cast) and isinstance(node.to, (exp.ObjectIdentifier, exp.DataType)):
            return _cast(node)
        if isinstance(node, exp.DataType) and not isinstance(node.parent, exp.Cast):
            return _plain_type(node)
        if isinstance(node, exp.CurrentSchemas):
            include_implicit = node.this.sql().lower() if node.this is not None else "false"
            return _literal(lookup("current_schemas", [include_implicit]))
        session = SESSION_FUNCTIONS.get(type(node))
        if session is not None:
            return _literal(lookup(session, []))
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in SESSION_ANONYMOUS:
                args = [a.name for a in node.expressions if isinstance(a, exp.Literal)]
                if len(args) != len(node.expressions):
                    raise FeatureNotAllowed(f"{name}() takes literal arguments only")
                return _literal(lookup(name, args))
            if name == "_pg_expandarray" and not isinstance(node.parent, exp.Table):
                return _expandarray_in_select(node.expressions[0])
            if name in _RENAMED_FUNCTIONS:
                return exp.Anonymous(this=_RENAMED_FUNCTIONS[name], expressions=node.expressions)
            if name == "current_schemas":
                return _literal(
                    lookup("current_schemas", [node.expressions[0].sql()] if node.expressions else [])
                )
            if name.startswith(DENIED_PREFIXES):
                raise FeatureNotAllowed(f'function "{name}" is not allowed')
        if (
            isinstance(node, exp.Func)
            and not isinstance(node, exp.Anonymous)
            and node.sql_name().lower().startswith(DENIED_PREFIXES)
        ):
            raise FeatureNotAllowed(f'function "{node.sql_name().lower()}" is not allowed')
        return node

    tree = _children_first(tree, rewrite)
    for node in tree.find_all(exp.ReadCSV, exp.ReadParquet, exp.Command):
        raise FeatureNotAllowed(f"{node.key.upper()} is not allowed")

    found = parameters(tree)
    count = max((parameter_index(p) for p in found), default=-1) + 1
    from_casts: dict[int, PgType] = {}
    for p in found:  # $1::numeric makes $1 a numeric, as in PostgreSQL
        if isinstance(p.parent, exp.Cast) and isinstance(p.parent.to, exp.DataType):
            cast_type = _CAST_PARAMETER_TYPES.get(p.parent.to.this)
            if cast_type is not None:
                from_casts.setdefault(parameter_index(p), cast_type)
    types: tuple[PgType, ...] = tuple(
        (declared[i] if i < len(declared) and declared[i] else from_casts.get(i, "text"))  # type: ignore[misc]
        for i in range(count)
    )
    tree = tree.transform(
        lambda n: (
            exp.cast(exp.Parameter(this=n.this.copy()), DUCKDB_CAST[types[parameter_index(n)]])
            if isinstance(n, exp.Parameter)
            else n
        )
    )
    return CatalogQuery(tree.sql(dialect="duckdb"), types)


def _expandarray_in_select(array: exp.Expression) -> exp.Expression:
    """_pg_expandarray(a) in a select list: one (x, n) struct per element, as a set-returning call."""
    template = sqlglot.parse_one(
        "unnest(list_transform(generate_series(1, len(__a)), i -> struct_pack(x := __a[i], n := i)))",
        read="duckdb",
    )
    return template.transform(lambda n: array.copy() if isinstance(n, exp.Column) and n.name == "__a" else n)


def _children_first(tree: exp.Expression, fun: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """Rewrite every node after its children (sqlglot's `transform` skips inside replaced nodes)."""
    for node in reversed(list(tree.walk())):
        new = fun(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


_TABLE_FUNCTION_NODES = (exp.Unnest, exp.Explode, exp.GenerateSeries, exp.ExplodingGenerateSeries)


def _table_function(table: exp.Table) -> str | None:
    """The name of the table function `table` calls, or None for a plain relation."""
    inner = table.this
    if isinstance(inner, exp.Dot):
        inner = inner.expression
    if not isinstance(inner, exp.Func):
        return None
    name = inner.name.lower() if isinstance(inner, exp.Anonymous) else inner.sql_name().lower()
    if name not in TABLE_FUNCTIONS and not isinstance(inner, _TABLE_FUNCTION_NODES):
        raise FeatureNotAllowed(f'table function "{name}" is not allowed')
    return name


def _relation(
    table: exp.Table, catalog: Collection[tuple[str, str]], views: Mapping[str, str]
) -> exp.Expression:
    if _table_function(table) is not None:
        if isinstance(table.this, exp.Dot):
            table.set("this", table.this.expression)
        table.set("db", None)
        return table
    name, schema = table.name.lower(), table.db.lower()
    if refers_to_cte(table):
        return table
    target = SCHEMAS.get(schema or "pg_catalog")
    if target is None or (target, name) not in catalog:
        shown = f"{schema}.{name}" if schema else name
        raise UndefinedObject(
            f'relation "{shown}" does not exist',
            hint="PrivacyLens emulates the pg_catalog and information_schema relations "
            "that PostgreSQL clients use.",
        )
    view = views.get(f"{target}.{name}")
    if view is not None:
        alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
        return exp.Subquery(this=sqlglot.parse_one(view, read="duckdb"), alias=alias)
    table.set("db", exp.to_identifier(target))
    table.set("this", exp.to_identifier(name, quoted=True))
    return table


def _operator(node: exp.Operator) -> exp.Expression:
    op = str(node.args.get("operator", "")).split(".")[-1].strip()
    if op in _REGEX_OPERATORS:
        negate, insensitive = _REGEX_OPERATORS[op]
        args = [node.this, node.expression] + ([exp.Literal.string("i")] if insensitive else [])
        match: exp.Expression = exp.Anonymous(this="regexp_matches", expressions=args)
        return exp.Not(this=match) if negate else match
    comparisons = {"=": exp.EQ, "<>": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
    if op in comparisons:
        return comparisons[op](this=node.this, expression=node.expression)
    raise FeatureNotAllowed(f"OPERATOR({op}) is not supported")


def _cast_target(target: exp.Expression) -> str:
    """The type name a cast targets, without a pg_catalog. prefix, upper case."""
    if isinstance(target, exp.ObjectIdentifier):
        return target.this.upper()
    assert isinstance(target, exp.DataType)
    if target.this == exp.DataType.Type.USERDEFINED:
        kind = target.args.get("kind")
        if isinstance(kind, exp.Dot):
            return kind.expression.name.upper()
        return str(kind.name if isinstance(kind, exp.Expression) else kind).upper()
    return target.this.name.upper()


_PSEUDO_TYPES = frozenset({"REGCLASS", "REGTYPE", "OID", "REGNAMESPACE", "REGROLE", "XID", "REGCONFIG",
                           "NAME", "INT2VECTOR", "OIDVECTOR", "REGPROC", "REGPROCEDURE", "CHAR",
                           "BPCHAR"})  # fmt: skip


def _plain_type(node: exp.DataType) -> exp.DataType:
    """A `pg_catalog.`-qualified or PostgreSQL-only type name nested in another type (e.g. int2[])."""
    if node.this != exp.DataType.Type.USERDEFINED:
        return node
    name = _cast_target(node)
    if name in _PSEUDO_TYPES:
        return exp.DataType.build("BIGINT" if name not in ("NAME", "CHAR", "BPCHAR") else "VARCHAR")
    try:
        return exp.DataType.build(name.lower(), dialect="postgres")
    except Exception as err:  # noqa: BLE001 - any unknown type name is refused the same way
        raise UndefinedObject(f'type "{name.lower()}" does not exist') from err


def _cast(node: exp.Cast) -> exp.Expression:
    kind = _cast_target(node.to)
    inner = node.this
    by_name = (isinstance(inner, exp.Literal) and inner.is_string) or isinstance(inner, exp.Parameter)
    if kind == "REGCLASS":  # 'employees'::regclass is an oid; c.oid::regclass shows a name
        if by_name:
            return exp.Anonymous(this="regclass_oid", expressions=[exp.cast(inner, "VARCHAR")])
        return exp.Anonymous(this="regclass_name", expressions=[inner])
    if kind == "REGTYPE":
        if by_name:
            return exp.Anonymous(this="to_regtype", expressions=[inner])
        return exp.Anonymous(this="format_type", expressions=[inner, exp.Null()])
    if kind in ("OID", "REGNAMESPACE", "REGROLE", "XID", "REGCONFIG"):
        return exp.cast(inner, "BIGINT")
    if kind in ("NAME", "INT2VECTOR", "OIDVECTOR", "REGPROC", "REGPROCEDURE", "CHAR", "BPCHAR"):
        return exp.cast(inner, "VARCHAR")
    if isinstance(node.to, exp.DataType) and node.to.this == exp.DataType.Type.USERDEFINED:
        try:
            return exp.cast(inner, exp.DataType.build(kind.lower(), dialect="postgres"))
        except Exception as err:  # noqa: BLE001 - any unknown type name is refused the same way
            raise UndefinedObject(f'type "{kind.lower()}" does not exist') from err
    return node


def _literal(value: str | int | list[str] | None) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, list):
        return exp.Array(expressions=[exp.Literal.string(v) for v in value])
    if isinstance(value, int):
        return exp.Literal.number(value)
    return exp.Literal.string(value)


# PostgreSQL names a cast column by the type's internal name: SELECT 1::integer is "int4".
_INTERNAL_TYPE_NAMES = {"decimal": "numeric", "int": "int4", "integer": "int4", "bigint": "int8",
                        "smallint": "int2", "double": "float8", "float": "float4", "boolean": "bool",
                        "timestamptz": "timestamptz", "char": "bpchar"}  # fmt: skip


def _output_name(item: exp.Expression) -> str:
    """PostgreSQL's column name for a select-list item (FigureColname)."""
    if isinstance(item, exp.Alias):
        return item.alias
    return _figure_name(item)[0]


def _figure_name(item: exp.Expression) -> tuple[str, int]:
    """(name, strength): 2 for a column or function name, 1 for a type name, 0 for `?column?`."""
    if isinstance(item, exp.Column):
        return item.name, 2
    if type(item) in SESSION_FUNCTIONS:
        return SESSION_FUNCTIONS[type(item)], 2
    if isinstance(item, exp.Dot) and isinstance(item.expression, exp.Func):
        return _figure_name(item.expression)
    if isinstance(item, exp.Anonymous):
        return item.name.lower(), 2
    if isinstance(item, exp.Cast):
        name, strength = _figure_name(item.this)
        if strength == 2:
            return name, 2
        spelled = _cast_target(item.to).lower()
        return _INTERNAL_TYPE_NAMES.get(spelled, spelled), 1
    if isinstance(item, exp.Boolean):
        return "bool", 1
    if isinstance(item, exp.Case):
        return "case", 2
    if isinstance(item, exp.Func):
        return item.sql_name().lower(), 2
    return "?column?", 0
