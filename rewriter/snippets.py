"""SQL fragments the rules write as text, parsed once per distinct text.

The planning rules build some engine expressions as DuckDB SQL text (clipping, fixed-point sums,
width buckets, row hashes) and parse them into trees. The same fragments recur in every plan of a
dataset, and parsing was a large share of planning time: each distinct text is parsed once here and
every use gets a copy (a tree is changed in place when it is put into a plan).
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp


@functools.lru_cache(maxsize=4096)
def _parsed(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="duckdb")


def snippet(sql: str) -> exp.Expression:
    """The DuckDB fragment `sql` as a fresh tree of its own."""
    return _parsed(sql).copy()
