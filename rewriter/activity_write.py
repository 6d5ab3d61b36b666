"""Writes to activity datasets, read from SQL: COPY ... FROM STDIN, INSERT ... VALUES, DELETE.

    COPY activity (user_id, ts, op) FROM STDIN [WITH] [(FORMAT csv, HEADER [true])]
    COPY activity FROM STDIN (FORMAT text)
    INSERT INTO activity (user_id, ts, op) VALUES ('u1', '2025-10-01 08:00+00', '+'), ...
    DELETE FROM activity WHERE user_id = 'u1'        -- an erasure, as of now

Only these shapes are understood; anything else is refused before it touches a store. Which
dataset, and whether the user may write, is decided by the gateway (`proxy.activity_query`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from pgerrors import FeatureNotAllowed, InvalidParameterValue, SyntaxErrorPg

FIELDS = ("user_id", "ts", "op")
_USAGE = "COPY <dataset> (user_id, ts, op) FROM STDIN [WITH (FORMAT csv, HEADER)]"


@dataclass(frozen=True)
class CopyIn:
    table: str
    columns: tuple[str, ...]  # user_id, ts, optionally op and segment columns, in any order
    format: Literal["text", "csv"]
    header: bool


def parse_copy(tokens: list[Token]) -> CopyIn:
    """COPY table [(columns)] FROM STDIN [[WITH] (options) | CSV [HEADER]]."""
    words = [t.text for t in tokens]
    upper = [w.upper() for w in words]
    i = 1
    if len(words) < 4:
        raise SyntaxErrorPg("syntax error in COPY", hint=_USAGE)
    table = words[i].lower()
    i += 1
    while i + 1 < len(words) and words[i] == ".":  # schema.table: the table's own name counts
        table = words[i + 1].lower()
        i += 2
    columns: tuple[str, ...] = FIELDS
    if i < len(tokens) and tokens[i].token_type == TokenType.L_PAREN:
        closing = upper.index(")", i)
        columns = tuple(w.lower() for w in words[i + 1 : closing] if w != ",")
        i = closing + 1
    if upper[i : i + 2] != ["FROM", "STDIN"]:
        if upper[i : i + 1] == ["TO"]:
            raise FeatureNotAllowed(
                "COPY ... TO would export rows; activity events are never exported",
                hint="Read DAU and MAU through privacylens.dau(...) and privacylens.mau(...).",
            )
        raise FeatureNotAllowed("COPY reads activity events from STDIN only", hint=_USAGE)
    i += 2
    options = [w for w in upper[i:] if w not in ("WITH", "(", ")", ",")]
    fmt: Literal["text", "csv"] = "text"
    header = False
    j = 0
    while j < len(options):
        word = options[j]
        value = options[j + 1] if j + 1 < len(options) else ""
        if word == "FORMAT" and value in ("TEXT", "CSV", "'TEXT'", "'CSV'"):
            fmt = "csv" if "CSV" in value else "text"
            j += 2
        elif word == "CSV":
            fmt = "csv"
            j += 1
        elif word == "HEADER":
            header = value not in ("FALSE", "OFF", "0")
            j += 2 if value in ("TRUE", "FALSE", "ON", "OFF", "1", "0") else 1
        else:
            raise FeatureNotAllowed(f"COPY option {word} is not supported", hint=_USAGE)
    _check_columns("COPY", columns)
    return CopyIn(table, columns, fmt, header)


def _check_columns(verb: str, columns: tuple[str, ...]) -> None:
    """user_id and ts, optionally op, and segment column names (the service checks those against
    the policy), each once."""
    if "user_id" not in columns or "ts" not in columns or len(set(columns)) != len(columns):
        raise FeatureNotAllowed(
            f"{verb} columns must be user_id, ts, optionally op and the dataset's segment columns, each "
            f"once, not ({', '.join(columns)})",
            hint=_USAGE,
        )


def written_table(tree: exp.Expression) -> str | None:
    """The table an INSERT or DELETE writes to (None for anything else)."""
    if isinstance(tree, exp.Insert):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        return target.name.lower() if isinstance(target, exp.Table) else None
    if isinstance(tree, exp.Delete) and isinstance(tree.this, exp.Table):
        return tree.this.name.lower()
    return None


def insert_rows(tree: exp.Insert, params: list[Any]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """(columns, rows) of INSERT INTO t [(columns)] VALUES (...), ... with literal or $n values."""
    columns = (
        tuple(c.name.lower() for c in tree.this.expressions) if isinstance(tree.this, exp.Schema) else FIELDS
    )
    values = tree.expression
    if not isinstance(values, exp.Values) or tree.args.get("returning") or tree.args.get("conflict"):
        raise FeatureNotAllowed(
            "INSERT into an activity dataset takes VALUES rows only",
            hint="INSERT INTO activity (user_id, ts, op) VALUES ('u1', '2025-10-01 08:00+00', '+')",
        )
    _check_columns("INSERT", columns)
    rows = []
    for row in values.expressions:
        items = row.expressions if isinstance(row, exp.Tuple) else [row]
        if len(items) != len(columns):
            raise SyntaxErrorPg(f"INSERT has {len(items)} values where {len(columns)} columns are named")
        rows.append(tuple(_scalar(item, params) for item in items))
    return columns, rows


def erased_user(tree: exp.Delete, user_column: str, params: list[Any]) -> str:
    """The user id of DELETE FROM t WHERE user_id = '...': an erasure request."""
    where = tree.args.get("where")
    condition = where.this if isinstance(where, exp.Where) else None
    if (
        isinstance(condition, exp.EQ)
        and isinstance(condition.this, exp.Column)
        and condition.this.name.lower() == user_column
        and not tree.args.get("using")
        and not tree.args.get("returning")
    ):
        value = _scalar(condition.expression, params)
        if value is not None and str(value).strip():
            return str(value)
    raise FeatureNotAllowed(
        "DELETE on an activity dataset erases one person: DELETE FROM <dataset> WHERE user_id = '<id>'",
        hint="Each erasure removes the person's events up to now from every later DAU and MAU release.",
    )


def _scalar(node: exp.Expression, params: list[Any]) -> Any:
    if isinstance(node, exp.Cast):
        node = node.this
    if isinstance(node, exp.Parameter):
        index = int(node.name) - 1
        if not 0 <= index < len(params):
            raise InvalidParameterValue(f"parameter ${index + 1} is not bound")
        value = params[index]
        return None if value is None else str(value)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Literal):
        return node.this
    raise FeatureNotAllowed("activity rows take literal values or parameters only")
