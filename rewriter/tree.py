"""Small helpers for reading a checked sqlglot tree (no policy decisions here)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlglot import exp

AGGREGATES: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg",
    exp.Variance: "var_samp", exp.VariancePop: "var_pop",
    exp.Stddev: "stddev_samp", exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop",
    exp.Median: "quantile", exp.PercentileCont: "quantile", exp.PercentileDisc: "quantile",
}  # fmt: skip
# The policy's aggregate names: one permission covers a family.
PERMISSION = {"count": "count", "sum": "sum", "avg": "avg", "var_samp": "var", "var_pop": "var",
              "stddev_samp": "stddev", "stddev_pop": "stddev", "quantile": "quantile"}  # fmt: skip


def quantile_parts(node: exp.Expression) -> tuple[float, exp.Expression] | None:
    """(p, argument) of MEDIAN(x) or PERCENTILE_CONT/DISC(p) WITHIN GROUP (ORDER BY x), else None."""
    if isinstance(node, exp.Median):
        return 0.5, node.this
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, (exp.PercentileCont, exp.PercentileDisc)):
        fraction = node.this.this
        order = node.expression
        if not (isinstance(fraction, exp.Literal) and not fraction.is_string) or not isinstance(
            order, exp.Order
        ):
            return None
        if len(order.expressions) != 1:
            return None
        return float(fraction.this), order.expressions[0].this
    return None


def from_table(tree: exp.Select) -> exp.Table:
    """The single table in FROM (reject_unsupported_syntax and resolve_dataset guarantee there is one)."""
    source = tree.args.get("from_") or tree.args.get("from")
    assert source is not None and isinstance(source.this, exp.Table)
    return source.this


def dataset_name(tree: exp.Select) -> str:
    return from_table(tree).name.lower()


def aggregate_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.WithinGroup):
        return "quantile" if quantile_parts(node) is not None else None
    return AGGREGATES.get(type(node))


def parameter_index(node: exp.Parameter) -> int:
    """0-based index of a `$n` parameter."""
    return int(node.this.this) - 1


def parameters(tree: exp.Expression) -> list[exp.Parameter]:
    return list(tree.find_all(exp.Parameter))


def literal(value: Any) -> exp.Expression:
    """A bound parameter's value as the literal a client could have written in its place."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float, Decimal)):
        return exp.Literal.number(repr(value) if isinstance(value, float) else str(value))
    if isinstance(value, dt.datetime):
        return exp.Literal.string(value.isoformat(sep=" "))
    return exp.Literal.string(str(value))
