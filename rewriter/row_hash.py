"""The keyed row hash contribution bounding orders rows by, computed alike on every engine.

Which rows of a person a bounded plan keeps must not depend on the engine the data lives on (the
same question on DuckDB, PostgreSQL and Spark gives the same exact aggregates) and must not be
predictable by an analyst. So the order is `md5` of a portable text of the row, keyed with
`privacylens_secret()` (each engine supplies the secret without it appearing in SQL text), then the
row's double and timestamp values themselves as tie-breaks. Every part's text is one every engine
renders the same: integers and text as they are, booleans as t/f, dates in ISO form, doubles as
floor(x · 1000) while |x| < 1e15, timestamps as whole epoch seconds; a NULL (or a double too large
to render) is the control character U+001E; parts are joined by U+001F. md5 is the one keyed
digest all three engines have (PostgreSQL compares its hex text under the "C" collation).

>>> row_hash([("user_id", "bigint"), ("minutes", "double")]).sql("duckdb")[:60]
'MD5(CONCAT_WS(CHR(31), COALESCE(CAST("user_id" AS TEXT), CHR'
>>> [t.sql("duckdb") for t in tie_breaks([("minutes", "double"), ("channel", "text")])]
['"minutes"']
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from rewriter.snippets import snippet

DOUBLE_TEXT_LIMIT = 1e15  # floor(x · 1000) fits a BIGINT well inside this

Part = tuple[str | exp.Expression, str]  # (column name or expression, policy type)


def _expression(value: str | exp.Expression) -> exp.Expression:
    return exp.column(value, quoted=True) if isinstance(value, str) else value.copy()


def portable_text(value: str | exp.Expression, kind: str) -> exp.Expression:
    """Text of one value that DuckDB, PostgreSQL and Spark render identically (NULL stays NULL)."""
    sql = _expression(value).sql("duckdb")
    if kind == "text":
        text = sql
    elif kind in ("bigint", "integer"):
        text = f"CAST({sql} AS VARCHAR)"
    elif kind == "boolean":
        text = f"CASE WHEN {sql} THEN 't' WHEN NOT {sql} THEN 'f' END"
    elif kind == "date":
        text = f"CAST(CAST({sql} AS DATE) AS VARCHAR)"
    elif kind == "timestamp":
        text = f"CAST(CAST(FLOOR(EPOCH(CAST({sql} AS TIMESTAMP))) AS BIGINT) AS VARCHAR)"
    elif kind == "double":
        text = (
            f"CASE WHEN ABS(CAST({sql} AS DOUBLE)) < {DOUBLE_TEXT_LIMIT!r} "
            f"THEN CAST(CAST(FLOOR(CAST({sql} AS DOUBLE) * 1000.0) AS BIGINT) AS VARCHAR) END"
        )
    else:
        raise ValueError(f"no portable text for type {kind}")
    return snippet(f"COALESCE({text}, CHR(30))")


def row_hash(parts: Sequence[Part]) -> exp.Expression:
    """md5 over the parts' portable texts and the bounding secret."""
    texts = [portable_text(value, kind) for value, kind in parts]
    sql = ", ".join(["CHR(31)", *(t.sql("duckdb") for t in texts), "privacylens_secret()"])
    return snippet(f"MD5(CONCAT_WS({sql}))")


def tie_breaks(parts: Sequence[Part]) -> list[exp.Expression]:
    """The values whose portable text is coarser than the value: ordered by themselves after the hash."""
    return [_expression(value) for value, kind in parts if kind in ("double", "timestamp")]
