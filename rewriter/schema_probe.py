"""Schema probes: `SELECT * FROM t WHERE 1 <> 1` or `... LIMIT 0`, as BI tools send to learn columns.

Such a query can return no rows whatever the data, so it is answered from the policy's metadata:
the requested columns with their types and zero rows, without the engine and without budget.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

from pgerrors import AccessDenied
from rewriter.policy import Policy
from rewriter.types import POLICY_TO_PG


def probe_columns(tree: exp.Expression, policy: Policy) -> list[tuple[str, str]] | None:
    """The (name, type) columns of a schema probe, or None when `tree` is not one."""
    if not isinstance(tree, exp.Select) or not _returns_no_rows(tree):
        return None
    allowed = {"expressions", "from", "from_", "where", "limit"}
    if any(value and key not in allowed for key, value in tree.args.items()):
        return None
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    if table.catalog or (table.db and table.db.lower() != "public"):
        return None
    dataset = policy.datasets.get(table.name.lower())
    if dataset is None:
        return None
    columns: list[tuple[str, str]] = []
    for item in tree.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        if isinstance(value, exp.Star) or (
            isinstance(value, exp.Column) and isinstance(value.this, exp.Star)
        ):
            columns += [(name, POLICY_TO_PG[spec.type]) for name, spec in dataset.columns.items()]
        elif isinstance(value, exp.Column) and value.name.lower() in dataset.columns:
            spec = dataset.columns[value.name.lower()]
            columns.append(
                (
                    item.alias_or_name if isinstance(item, exp.Alias) else value.name.lower(),
                    POLICY_TO_PG[spec.type],
                )
            )
        elif isinstance(value, exp.Column):
            raise AccessDenied(
                f'column "{value.name}" is not in the privacy policy for dataset "{table.name}"'
            )
        else:
            return None
    return columns


def _returns_no_rows(tree: exp.Select) -> bool:
    limit = tree.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal) and limit.expression.this == "0":
        return True
    where = tree.args.get("where")
    if where is None or any(True for _ in where.find_all(exp.Column, exp.Subquery, exp.Func)):
        return False
    folded = simplify(where.this.copy())
    return isinstance(folded, exp.Boolean) and folded.this is False
