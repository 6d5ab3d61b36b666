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

from pgerrors import FeatureNotAllowed, StatementTooComplex, SyntaxErrorPg
from rewriter.activity_write import CopyIn, parse_copy

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
    EXPLAIN = "explain"  # EXPLAIN query: the DP plan, free
    DECLARE = "declare"  # DECLARE name CURSOR FOR query: the query runs once, rows wait in a portal
    FETCH = "fetch"
    MOVE = "move"
    CLOSE = "close"
    SAVEPOINT = "savepoint"
    RELEASE = "release"
    ROLLBACK_TO = "rollback_to"
    COPY_IN = "copy_in"  # COPY <activity dataset> FROM STDIN: events in (rewriter.activity_write)
    WRITE = "write"  # INSERT / DELETE: allowed on activity datasets only, refused elsewhere
    OTHER = "other"  # refused


@dataclass(frozen=True)
class Statement:
    kind: Kind
    tree: exp.Expression | None
    words: tuple[str, ...] = ()  # upper-cased leading keywords, for token-recognised statements
    cursor: str = ""  # DECLARE / FETCH / MOVE / CLOSE: the cursor's name ("" with CLOSE ALL)
    count: int | None = None  # FETCH / MOVE: rows to move forward; None means ALL
    inner: Statement | None = None  # DECLARE: the query
    holdable: bool = False  # DECLARE ... WITH HOLD
    copy: CopyIn | None = None  # COPY_IN: what is copied, and how
    # Plans already made for this statement, keyed by everything a plan depends on (see Gateway).
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # Facts derived once from the tree (whether it reads the clock, its PostgreSQL text), by name.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


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


# Limits that keep parsing and planning of one statement bounded (a few hundred ms here), checked
# before each step does its work: the text, then its tokens and nesting, then the parsed tree.
MAX_STATEMENT_CHARS = 100_000
MAX_TOKENS = 20_000
MAX_NESTING = 100
MAX_TREE_NODES = 10_000
MAX_TREE_DEPTH = 150  # a chain of 150 ORs; the rules and sqlglot's generator recurse once per level
_LIMIT_HINT = "Split the question into smaller ones, or group by a column instead of listing conditions."


def split_statements(sql: str) -> list[Statement]:
    """Parse `sql` into classified statements; empty statements are dropped. Raises SyntaxErrorPg,
    or StatementTooComplex past the limits above."""
    if len(sql) > MAX_STATEMENT_CHARS:
        raise StatementTooComplex(
            f"this statement is {len(sql)} characters long, more than the {MAX_STATEMENT_CHARS} allowed",
            hint=_LIMIT_HINT,
        )
    tokens = _tokenize(sql)
    _check_tokens(tokens)
    statements = []
    for chunk in _split_tokens(tokens):
        statements.append(_classify(chunk, sql))
    for statement in statements:
        _check_tree(statement)
    return statements


def _check_tokens(tokens: list[Token]) -> None:
    if len(tokens) > MAX_TOKENS:
        raise StatementTooComplex(
            f"this statement has {len(tokens)} tokens, more than the {MAX_TOKENS} allowed", hint=_LIMIT_HINT
        )
    depth = deepest = 0
    for token in tokens:
        if token.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
    if deepest > MAX_NESTING:
        raise StatementTooComplex(
            f"this statement nests parentheses {deepest} deep, more than the {MAX_NESTING} allowed",
            hint=_LIMIT_HINT,
        )


def _check_tree(statement: Statement) -> None:
    for part in (statement, statement.inner):
        if part is None or part.tree is None:
            continue
        nodes, depth = _size(part.tree)
        if nodes > MAX_TREE_NODES:
            raise StatementTooComplex(
                f"this statement has {nodes} expressions, more than the {MAX_TREE_NODES} allowed",
                hint=_LIMIT_HINT,
            )
        if depth > MAX_TREE_DEPTH:
            raise StatementTooComplex(
                f"this statement nests expressions {depth} deep, more than the {MAX_TREE_DEPTH} allowed",
                hint="Write long lists of alternatives as column IN (value, ...).",
            )


def _size(tree: exp.Expression) -> tuple[int, int]:
    """Node count and depth, without recursion (the tree may be deeper than Python's stack)."""
    nodes = deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        deepest = max(deepest, depth)
        for child in node.iter_expressions():
            stack.append((child, depth + 1))
    return nodes, deepest


def _tokenize(sql: str) -> list[Token]:
    try:
        return sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except TokenError as err:
        raise SyntaxErrorPg(f"syntax error: {err}") from err


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
    if (
        words[0] in ("DECLARE", "FETCH", "EXPLAIN")
        and len(tokens) == 2
        and tokens[1].token_type == TokenType.STRING
    ):
        # sqlglot lexes these as a command plus the rest of the statement as one string: lex the rest.
        rest = tokens[1].text
        tokens = [tokens[0], *_tokenize(rest)]
        sql = rest
    if words[0] == "DECLARE":
        return _declare(tokens, sql)
    if words[0] == "EXPLAIN":
        return _explain(tokens, sql)
    if words[0] in ("FETCH", "MOVE"):
        return _fetch(tokens)
    if words[0] == "CLOSE":
        names = [t.text for t in tokens[1:]]
        if len(names) != 1:
            raise SyntaxErrorPg("syntax error in CLOSE", hint="CLOSE cursor_name, or CLOSE ALL")
        return Statement(Kind.CLOSE, None, words, cursor="" if names[0].upper() == "ALL" else names[0])
    if words[0] == "COPY":
        return Statement(Kind.COPY_IN, None, words, copy=parse_copy(tokens))
    if words[0] in REFUSED_KEYWORDS and words[0] not in ("INSERT", "DELETE"):
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
    elif isinstance(tree, (exp.Insert, exp.Delete)):
        kind = Kind.WRITE
    else:
        kind = Kind.OTHER
    return Statement(kind, tree, words)


_DECLARE_OPTIONS = {
    "BINARY",
    "ASENSITIVE",
    "INSENSITIVE",
    "NO",
    "SCROLL",
    "CURSOR",
    "WITH",
    "WITHOUT",
    "HOLD",
}


def _declare(tokens: list[Token], sql: str) -> Statement:
    """DECLARE name [options] CURSOR [WITH | WITHOUT HOLD] FOR query."""
    if len(tokens) < 5:
        raise SyntaxErrorPg("syntax error in DECLARE", hint="DECLARE name CURSOR FOR SELECT ...")
    name = tokens[1].text
    options = []
    index = 2
    while index < len(tokens) and tokens[index].text.upper() != "FOR":
        options.append(tokens[index].text.upper())
        index += 1
    if index >= len(tokens) - 1 or "CURSOR" not in options or not set(options) <= _DECLARE_OPTIONS:
        raise SyntaxErrorPg("syntax error in DECLARE", hint="DECLARE name CURSOR FOR SELECT ...")
    if "SCROLL" in options and "NO" not in options:
        raise FeatureNotAllowed("scrollable cursors are not supported", hint="Declare the cursor NO SCROLL.")
    query = sql[tokens[index + 1].start : tokens[-1].end + 1]
    inner = _classify(tokens[index + 1 :], sql) if query else None
    holdable = "WITH" in options and "HOLD" in options
    return Statement(Kind.DECLARE, None, ("DECLARE",), cursor=name, inner=inner, holdable=holdable)


def _explain(tokens: list[Token], sql: str) -> Statement:
    """EXPLAIN [VERBOSE] query. EXPLAIN ANALYZE would run the query, so it is refused."""
    rest = tokens[1:]
    while rest and rest[0].text.upper() == "VERBOSE":
        rest = rest[1:]
    if rest and rest[0].text.upper() in ("ANALYZE", "ANALYSE", "("):
        raise FeatureNotAllowed(
            "EXPLAIN ANALYZE and EXPLAIN options are not supported",
            hint="EXPLAIN <query> shows the DP plan, its ε split and expected errors, free.",
        )
    if not rest:
        raise SyntaxErrorPg("syntax error at end of input", hint="EXPLAIN SELECT ...")
    return Statement(Kind.EXPLAIN, None, ("EXPLAIN",), inner=_classify(rest, sql))


def _fetch(tokens: list[Token]) -> Statement:
    """FETCH / MOVE [NEXT | FORWARD [n | ALL] | n | ALL] [FROM | IN] name (forward only)."""
    kind = Kind.FETCH if tokens[0].text.upper() == "FETCH" else Kind.MOVE
    words = [t.text for t in tokens[1:]]
    if not words:
        raise SyntaxErrorPg(f"syntax error in {kind.value.upper()}")
    name = words[-1]
    middle = [w.upper() for w in words[:-1] if w.upper() not in ("FROM", "IN")]
    count: int | None = 1
    if middle and middle[0] == "FORWARD":
        middle = middle[1:]
    if middle == ["NEXT"] or not middle:
        count = 1
    elif middle == ["ALL"]:
        count = None
    elif len(middle) == 1 and middle[0].isdigit():
        count = int(middle[0])
    else:
        raise FeatureNotAllowed(
            f"{kind.value.upper()} {' '.join(middle)} is not supported",
            hint="Cursors move forward only: FETCH FORWARD n FROM name, or FETCH ALL.",
        )
    return Statement(kind, None, (kind.value.upper(),), cursor=name, count=count)


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
