"""Qualify every column against the policy's schema with sqlglot's `qualify`.

`qualify` normalises identifiers as PostgreSQL does, resolves select-list aliases and positions in
GROUP BY / ORDER BY, and fails on a column it cannot place: that becomes 42501 naming the column.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify

from pgerrors import AccessDenied
from rewriter.context import RewriteContext
from rewriter.tree import dataset_name

SQLGLOT_TYPES = {
    "bigint": "BIGINT",
    "integer": "INT",
    "double": "DOUBLE",
    "text": "TEXT",
    "date": "DATE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}


def qualify_against_policy(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    name = dataset_name(tree)
    columns = ctx.dataset(name).columns
    schema = {name: {col: SQLGLOT_TYPES[spec.type] for col, spec in columns.items()}}
    aliases = {item.alias for item in tree.expressions}
    for column in tree.find_all(exp.Column):
        col = column.name if column.this.quoted else column.name.lower()
        refers_to_output = (
            col in aliases and column.find_ancestor(exp.Order, exp.Group, exp.Having) is not None
        )
        if col not in columns and not refers_to_output:
            raise _unknown_column(col, name, columns)
    try:
        qualified = qualify(
            tree,
            schema=schema,
            dialect="postgres",
            validate_qualify_columns=True,
            quote_identifiers=True,
            identify=True,
        )
    except OptimizeError as err:
        raise AccessDenied(
            f'could not resolve every column against dataset "{name}": {err}',
            hint=f"Columns of {name}: {', '.join(columns)}.",
        ) from err
    assert isinstance(qualified, exp.Select)
    return qualified


def _unknown_column(col: str, dataset: str, columns: dict) -> AccessDenied:
    return AccessDenied(
        f'column "{col}" is not in the privacy policy for dataset "{dataset}"',
        hint=f"Columns of {dataset}: {', '.join(columns)}.",
    )
