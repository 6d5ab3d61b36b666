"""Every column must be used where the policy allows it.

- GROUP BY: columns with a declared public `group_by_values` domain (never the privacy unit), and
  date_trunc(unit, column) of columns with a declared time range (`rewriter.group_keys`).
- Select list: group-by columns, or COUNT/SUM/AVG of a single column the policy allows that
  aggregate on (SUM and AVG need clipping bounds). A raw column outside an aggregate is refused.
- WHERE: filterable columns only, and no aggregates.
- ORDER BY: released output columns or group-by columns only.
- The privacy unit is never an analysis column: only COUNT(DISTINCT unit) may name it. Filtering,
  grouping or bucketing on it has no analytic use and is the lever of differencing, timing and
  oracle attacks on one person.
"""

from __future__ import annotations

from sqlglot import exp

from pgerrors import AccessDenied, FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.group_keys import group_keys, key_of
from rewriter.policy import Dataset
from rewriter.tree import AGGREGATES, PERMISSION, aggregate_name, dataset_name, quantile_parts


def check_column_access(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    name = dataset_name(tree)
    dataset = ctx.dataset(name)
    _check_privacy_unit(tree, dataset, name)
    keys = group_keys(tree, dataset, name)
    grouped = {key.key for key in keys}
    for item in tree.expressions:
        _check_select_item(item, grouped, dataset, name)
    where = tree.args.get("where")
    if where is not None:
        _check_where(where, dataset, name)
    having = tree.args.get("having")
    if having is not None:
        for node in having.walk():
            inside_aggregate = any(node.find_ancestor(t) is not None for t in AGGREGATES)
            if (
                isinstance(node, exp.Column)
                and node.table
                and not inside_aggregate
                and node.name not in {k.column for k in keys}
            ):
                raise AccessDenied(
                    f'column "{node.name}" can only be used in HAVING through a selected aggregate'
                )
    order = tree.args.get("order")
    if order is not None:
        outputs = {item.alias for item in tree.expressions}
        for ordered in order.expressions:
            plain = {k.column for k in keys if not k.is_time and k.bins is None and k.labels is None}
            _check_order_item(ordered, outputs, plain)
    return tree


def _check_privacy_unit(tree: exp.Select, dataset: Dataset, name: str) -> None:
    unit = dataset.privacy_unit
    for column in tree.find_all(exp.Column):
        if column.name != unit or not column.table:
            continue
        parent = column.parent
        if isinstance(parent, exp.Distinct) and isinstance(parent.parent, exp.Count):
            continue
        raise AccessDenied(
            f'column "{unit}" is the privacy unit of dataset "{name}": it can only be counted, '
            "never filtered, grouped or aggregated",
            hint=f"COUNT(DISTINCT {unit}) counts people; filter and group by the other columns.",
        )


def _check_select_item(item: exp.Expression, grouped: set[str], dataset: Dataset, name: str) -> None:
    value = item.this if isinstance(item, exp.Alias) else item
    if key_of(value) in grouped:
        return
    if isinstance(value, exp.Column):
        if value.name not in grouped:
            raise AccessDenied(
                f'column "{value.name}" can only be released inside an aggregate',
                hint=f"Use COUNT, SUM or AVG of {value.name}, or GROUP BY a public column.",
            )
        return
    function = aggregate_name(value)
    if function is None:
        raise FeatureNotAllowed(
            "only group-by columns and COUNT, SUM, AVG, VARIANCE, STDDEV, MEDIAN, PERCENTILE_CONT/DISC "
            "may appear in the select list",
            hint="Compute expressions over released values in your client.",
        )
    argument = value.this
    parts = quantile_parts(value)
    if parts is not None:
        fraction, argument = parts
        if not 0 <= fraction <= 1:
            raise FeatureNotAllowed("a percentile must be between 0 and 1", hint="PERCENTILE_CONT(0.9) ...")
    if isinstance(argument, exp.Star):
        return
    if isinstance(argument, exp.Distinct):
        if argument.expressions[0].name != dataset.privacy_unit:
            raise FeatureNotAllowed(
                "COUNT(DISTINCT ...) is supported on the privacy unit only",
                hint=f"COUNT(DISTINCT {dataset.privacy_unit}) counts people.",
            )
        return
    if not isinstance(argument, exp.Column):
        raise FeatureNotAllowed(
            f"{function.upper()} accepts a plain column name",
            hint=f"For example: {function.upper()}(salary)",
        )
    column = dataset.columns[argument.name]
    permission = PERMISSION[function]
    if permission not in column.allowed_aggregates():
        allowed = [c for c, spec in dataset.columns.items() if permission in spec.allowed_aggregates()]
        raise AccessDenied(
            f'{function.upper()} of column "{argument.name}" is not allowed by the privacy policy',
            hint=f"{function.upper()} is allowed on: {', '.join(allowed) or 'no column'}.",
        )


def _check_where(where: exp.Where, dataset: Dataset, name: str) -> None:
    for node in where.walk():
        if aggregate_name(node):
            raise FeatureNotAllowed("aggregates are not allowed in WHERE")
        if isinstance(node, exp.Column) and not dataset.columns[node.name].filterable:
            raise AccessDenied(f'column "{node.name}" of dataset "{name}" may not be used in WHERE')


def _check_order_item(ordered: exp.Ordered, outputs: set[str], grouped: set[str]) -> None:
    key = ordered.this
    if isinstance(key, exp.Column) and (
        (not key.table and key.name in outputs) or (key.table and key.name in grouped)
    ):
        return
    raise AccessDenied(
        "ORDER BY may only use released columns", hint="Order by an output column name or position."
    )
