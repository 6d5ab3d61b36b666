"""Small helpers for reading a checked sqlglot tree (no policy decisions here)."""

from __future__ import annotations

from sqlglot import exp

AGGREGATES: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg",
    exp.Variance: "var_samp", exp.VariancePop: "var_pop",
    exp.Stddev: "stddev_samp", exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop",
}  # fmt: skip
# The policy's aggregate names: one permission covers a family.
PERMISSION = {"count": "count", "sum": "sum", "avg": "avg", "var_samp": "var", "var_pop": "var",
              "stddev_samp": "stddev", "stddev_pop": "stddev"}  # fmt: skip


def from_table(tree: exp.Select) -> exp.Table:
    """The single table in FROM (reject_unsupported_syntax and resolve_dataset guarantee there is one)."""
    source = tree.args.get("from_") or tree.args.get("from")
    assert source is not None and isinstance(source.this, exp.Table)
    return source.this


def dataset_name(tree: exp.Select) -> str:
    return from_table(tree).name.lower()


def aggregate_name(node: exp.Expression) -> str | None:
    return AGGREGATES.get(type(node))


def parameter_index(node: exp.Parameter) -> int:
    """0-based index of a `$n` parameter."""
    return int(node.this.this) - 1


def parameters(tree: exp.Expression) -> list[exp.Parameter]:
    return list(tree.find_all(exp.Parameter))
