"""What every engine does to a plan's tree before rendering it, and to the values it gets back.

The plan names its dataset and calls `privacylens_secret()` for the bounding key; an engine puts its
own table and its own way of holding the key in their place (DuckDB keeps both as they are: a view
and a macro). Numeric sums may come back as Decimal; the answers layer works in ints and floats.

>>> import sqlglot
>>> tree = sqlglot.parse_one("SELECT MD5(privacylens_secret()) FROM t", read="duckdb")
>>> onto(tree, "t", exp.to_table("s.t2"), exp.column("key")).sql("postgres")
'SELECT MD5(key) FROM s.t2'
>>> plain(Decimal("12")), plain(Decimal("1.5"))
(12, 1.5)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlglot import exp


def onto(tree: exp.Expression, dataset: str, table: exp.Table, secret: exp.Expression) -> exp.Expression:
    """A copy of the plan's tree reading `table` and taking the bounding key from `secret`."""
    tree = tree.copy()
    for node in list(tree.find_all(exp.Table)):
        if node.name == dataset and not node.db:
            node.replace(table.copy())
    for node in list(tree.find_all(exp.Anonymous)):
        if node.name.lower() == "privacylens_secret":
            node.replace(secret.copy())
    return tree


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
