"""SELECT without FROM: answered without any data, from an allow-list of harmless expressions.

Literals, casts, arithmetic, string concatenation and comparisons are evaluated by a data-less,
locked DuckDB; session functions (version(), current_user, current_setting('x'), ...) are replaced
by literal values the session supplies. Anything else is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.plan import PgType
from rewriter.rules.reject_unsupported_syntax import CAST_TARGETS
from rewriter.tree import parameter_index, parameters

ALLOWED = frozenset({
    exp.Select, exp.Alias, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Cast,
    exp.DataType, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Paren, exp.DPipe,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.And, exp.Or, exp.Not, exp.Parameter,
})  # fmt: skip

# Session functions → the name the session's lookup answers to (and the output column name).
SESSION_FUNCTIONS: dict[type[exp.Expression], str] = {
    exp.CurrentVersion: "version",
    exp.CurrentDatabase: "current_database",
    exp.CurrentUser: "current_user",
    exp.SessionUser: "session_user",
    exp.CurrentSchema: "current_schema",
}
ANONYMOUS_FUNCTIONS = frozenset({"pg_backend_pid", "current_setting", "version", "current_database"})

DUCKDB_CAST = {
    "int8": "BIGINT",
    "int4": "INTEGER",
    "float8": "DOUBLE",
    "numeric": "DOUBLE",
    "text": "VARCHAR",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}

Lookup = Callable[[str, list[str]], str | int | None]


@dataclass(frozen=True)
class ConstantQuery:
    sql: str  # DuckDB SQL over no table
    names: tuple[str, ...]
    parameter_types: tuple[PgType, ...]


def plan_constant(tree: exp.Select, lookup: Lookup, declared: tuple[str | None, ...]) -> ConstantQuery:
    tree = tree.copy()
    names = tuple(_output_name(item) for item in tree.expressions)
    for key, value in tree.args.items():
        if value and key != "expressions":
            raise FeatureNotAllowed(f"{key.upper()} is not supported in a SELECT without FROM")

    def substitute(node: exp.Expression) -> exp.Expression:
        name = SESSION_FUNCTIONS.get(type(node))
        if name is None and isinstance(node, exp.Anonymous) and node.name.lower() in ANONYMOUS_FUNCTIONS:
            name = node.name.lower()
            args = [a.name for a in node.expressions if isinstance(a, exp.Literal)]
            if len(args) != len(node.expressions):
                raise FeatureNotAllowed(f"{name}() takes literal arguments only")
            return _literal(lookup(name, args))
        if name is not None:
            return _literal(lookup(name, []))
        return node

    tree = tree.transform(substitute)
    for node in tree.walk():
        if type(node) not in ALLOWED:
            what = node.sql_name() if isinstance(node, exp.Func) else node.key.upper()
            raise FeatureNotAllowed(
                f"{what.lower() if isinstance(node, exp.Func) else what} is not allowed here",
                hint="Statements without FROM may use literals, casts, arithmetic and version().",
            )
        if isinstance(node, exp.Cast) and node.to.this not in CAST_TARGETS:
            raise FeatureNotAllowed(f"casting to {node.to.sql('postgres')} is not supported")

    found = parameters(tree)
    count = max((parameter_index(p) for p in found), default=-1) + 1
    types: tuple[PgType, ...] = tuple(
        (declared[i] if i < len(declared) and declared[i] else "text")
        for i in range(count)  # type: ignore[misc]
    )
    tree = tree.transform(
        lambda n: (
            exp.cast(exp.Parameter(this=n.this.copy()), DUCKDB_CAST[types[parameter_index(n)]])
            if isinstance(n, exp.Parameter)
            else n
        )
    )
    return ConstantQuery(tree.sql(dialect="duckdb"), names, types)


def _literal(value: str | int | None) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, int):
        return exp.Literal.number(value)
    return exp.Literal.string(value)


def _output_name(item: exp.Expression) -> str:
    """PostgreSQL's column name for an unaliased expression."""
    if isinstance(item, exp.Alias):
        return item.alias
    if type(item) in SESSION_FUNCTIONS:
        return SESSION_FUNCTIONS[type(item)]
    if isinstance(item, exp.Anonymous):
        return item.name.lower()
    if isinstance(item, exp.Cast):
        inner = _output_name(item.this)
        return inner if inner != "?column?" else item.to.sql("postgres").lower().split("(")[0]
    return "?column?"
