"""Split a query string into statements with sqlglot and classify each one.

Only sqlglot's parse decides what a statement is; the client's text is never sent to an engine.
A few PostgreSQL statements sqlglot does not model (SHOW, START TRANSACTION, END, ABORT, RESET,
DISCARD, DEALLOCATE) are recognised from sqlglot's *tokens*, so a comment or odd spacing cannot hide
what they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from pgerrors import SyntaxErrorPg

logging.getLogger("sqlglot").setLevel(logging.ERROR)

DIALECT = "postgres"


class Kind(Enum):
    AGGREGATE = "aggregate"  # SELECT ... FROM a policy table: the DP path
    CONSTANT = "constant"  # SELECT without FROM: answered without data
    SET = "set"
    SHOW = "show"
    RESET = "reset"
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"
    RELEASE = "release"
    ROLLBACK_TO = "rollback_to"
    OTHER = "other"  # refused


@dataclass(frozen=True)
class Statement:
    kind: Kind
    tree: exp.Expression | None
    words: tuple[str, ...] = ()  # upper-cased leading keywords, for token-recognised statements
    # Plans already made for this statement, keyed by everything a plan depends on (see Gateway).
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


_TRANSACTION_WORDS = {  # longest prefixes first
    ("ROLLBACK", "TO"): Kind.ROLLBACK_TO,
    ("ROLLBACK", "TRANSACTION", "TO"): Kind.ROLLBACK_TO,
    ("ROLLBACK", "WORK", "TO"): Kind.ROLLBACK_TO,
    ("SAVEPOINT",): Kind.SAVEPOINT,
    ("RELEASE",): Kind.RELEASE,
    ("BEGIN",): Kind.BEGIN,
    ("START", "TRANSACTION"): Kind.BEGIN,
    ("COMMIT",): Kind.COMMIT,
    ("END",): Kind.COMMIT,
    ("ROLLBACK",): Kind.ROLLBACK,
    ("ABORT",): Kind.ROLLBACK,
}


# Statements refused by their first keyword, before parsing: DuckDB's escape hatches and every write.
REFUSED_KEYWORDS = frozenset({
    "ATTACH", "DETACH", "INSTALL", "LOAD", "PRAGMA", "COPY", "EXPORT", "IMPORT", "CALL", "SUMMARIZE",
    "DESCRIBE", "CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "GRANT",
    "REVOKE", "VACUUM", "CHECKPOINT", "USE", "PREPARE", "EXECUTE", "DO", "LISTEN", "NOTIFY", "LOCK",
})  # fmt: skip


def split_statements(sql: str) -> list[Statement]:
    """Parse `sql` into classified statements; empty statements are dropped. Raises SyntaxErrorPg."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except TokenError as err:
        raise SyntaxErrorPg(f"syntax error: {err}") from err
    statements = []
    for chunk in _split_tokens(tokens):
        statements.append(_classify(chunk, sql))
    return statements


def _split_tokens(tokens: list[Token]) -> list[list[Token]]:
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [chunk for chunk in chunks if chunk]


def _classify(tokens: list[Token], sql: str) -> Statement:
    words = tuple(t.text.upper() for t in tokens[:4])
    for prefix, kind in _TRANSACTION_WORDS.items():
        if words[: len(prefix)] == prefix:
            return Statement(kind, None, words)
    if words[0] in REFUSED_KEYWORDS:
        return Statement(Kind.OTHER, None, words)
    if words[0] in ("SHOW", "RESET", "DISCARD", "DEALLOCATE"):
        kind = {"SHOW": Kind.SHOW, "RESET": Kind.RESET}.get(words[0], Kind.OTHER)
        return Statement(kind, None, tuple(t.text for t in tokens))
    text = sql[tokens[0].start : tokens[-1].end + 1]
    try:
        trees = sqlglot.parse(text, read=DIALECT)
    except ParseError as err:
        raise SyntaxErrorPg(_syntax_message(err), position=_error_position(err, tokens)) from err
    if len(trees) != 1 or trees[0] is None:
        raise SyntaxErrorPg("syntax error: could not read the statement")
    tree = trees[0]
    if isinstance(tree, exp.Select):
        kind = Kind.AGGREGATE if tree.args.get("from_") or tree.args.get("from") else Kind.CONSTANT
    elif isinstance(tree, exp.Set):
        kind = Kind.SET
    else:
        kind = Kind.OTHER
    return Statement(kind, tree, words)


def _syntax_message(err: ParseError) -> str:
    details = err.errors[0] if err.errors else {}
    near = details.get("highlight") or ""
    return f'syntax error at or near "{near}"' if near else "syntax error"


def _error_position(err: ParseError, tokens: list[Token]) -> int | None:
    details = err.errors[0] if err.errors else {}
    line, col = details.get("line"), details.get("col")
    if not line or not col:
        return None
    for token in tokens:
        if token.line == line and token.col >= col:
            return token.start + 1
    return None
