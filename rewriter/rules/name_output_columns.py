"""Give every select-list item the name PostgreSQL would give it, as an explicit alias.

`COUNT(*)` is named `count`, `AVG(salary)` `avg`, a bare column its own name: the names clients
see, and the stems of the `<name>_ci_low` / `<name>_ci_high` columns.
"""

from __future__ import annotations

from sqlglot import exp

from rewriter.context import RewriteContext
from rewriter.tree import aggregate_name

# PostgreSQL names these columns after the function as written (sqlglot folds VAR_SAMP into VARIANCE).
_OUTPUT_NAMES = {
    exp.Variance: "variance", exp.Stddev: "stddev", exp.WidthBucket: "width_bucket",
    exp.TimestampTrunc: "date_trunc", exp.DateTrunc: "date_trunc", exp.Median: "median",
}  # fmt: skip


def name_output_columns(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    named = []
    for item in tree.expressions:
        if isinstance(item, exp.Alias):
            named.append(item)
            continue
        name = _OUTPUT_NAMES.get(type(item)) or (
            item.this.sql_name().lower() if isinstance(item, exp.WithinGroup) else aggregate_name(item)
        )
        name = name or (item.name if isinstance(item, exp.Column) else "?column?")
        named.append(exp.alias_(item, exp.to_identifier(name, quoted=True)))
    tree.set("expressions", named)
    return tree
