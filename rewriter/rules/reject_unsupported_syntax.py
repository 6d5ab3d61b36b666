"""Allow-list the node types of an aggregate query; anything else is refused (fail closed).

Only the shapes below reach the rest of the pipeline: one SELECT over one table, aggregates COUNT,
SUM, AVG, comparisons and boolean logic in WHERE, GROUP BY, ORDER BY and a literal LIMIT. Any node
type not listed, including ones sqlglot adds in a future release, is refused.
"""

from __future__ import annotations

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.rules.resolve_clock import NOW_FUNCTIONS

EXAMPLE = "SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department"

ALLOWED_NODES: frozenset[type[exp.Expression]] = frozenset({
    exp.Select, exp.From, exp.Table, exp.TableAlias, exp.Identifier, exp.Column, exp.Where,
    exp.Group, exp.Having, exp.Order, exp.Ordered, exp.Limit, exp.Alias,
    exp.Count, exp.Sum, exp.Avg, exp.Star,
    exp.Variance, exp.VariancePop, exp.Stddev, exp.StddevSamp, exp.StddevPop,
    exp.Median, exp.WithinGroup, exp.PercentileCont, exp.PercentileDisc,
    exp.Literal, exp.Boolean, exp.Null, exp.Parameter,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.And, exp.Or, exp.Not, exp.Paren,
    exp.In, exp.Between, exp.Is, exp.Like, exp.ILike,
    exp.Cast, exp.DataType, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.TimestampTrunc, exp.DateTrunc, exp.Var, exp.WidthBucket, exp.Case, exp.If,
    exp.Floor, exp.Extract,  # time buckets as dashboards write them (rewriter.group_keys)
    exp.CurrentTimestamp, exp.CurrentDate, exp.Localtimestamp, exp.Interval, exp.UnixToTime,
})  # fmt: skip

ALLOWED_SELECT_ARGS = frozenset(
    {"expressions", "from", "from_", "where", "group", "having", "order", "limit"}
)

CAST_TARGETS = frozenset({
    exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
    exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL,
    exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.BOOLEAN,
})  # fmt: skip

_NAMED_REFUSALS: dict[type[exp.Expression], str] = {
    exp.Subquery: "subqueries are not supported",
    exp.Join: "joins are not supported",
    exp.With: "WITH (common table expressions) is not supported",
    exp.Window: "window functions are not supported",
    exp.Distinct: "DISTINCT is not supported yet",
    exp.Union: "UNION is not supported",
}


_CLAUSE_REFUSALS = {
    "joins": "joins are not supported",
    "with": "WITH (common table expressions) is not supported",
    "with_": "WITH (common table expressions) is not supported",
    "distinct": "SELECT DISTINCT is not supported",
    "offset": "OFFSET is not supported",
    "windows": "window functions are not supported",
}


def reject_unsupported_syntax(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    for key, value in tree.args.items():
        if value and key not in ALLOWED_SELECT_ARGS:
            raise FeatureNotAllowed(
                _CLAUSE_REFUSALS.get(key, f"{key.upper()} is not supported in a DP query"),
                hint=f"Ask for aggregates over one table, for example: {EXAMPLE}",
            )
    source = tree.args.get("from_") or tree.args.get("from")
    if (
        source is None
        or not isinstance(source.this, exp.Table)
        or not isinstance(source.this.this, exp.Identifier)
    ):
        raise FeatureNotAllowed(
            "only a plain table name may follow FROM: table functions, file reads and subqueries "
            "are not allowed",
            hint=f"Query a dataset by name, for example: {EXAMPLE}",
        )
    for node in tree.walk():
        _check_node(node)
    return tree


def _check_node(node: exp.Expression) -> None:
    if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
        raise FeatureNotAllowed(
            "SELECT * would return individual rows; PrivacyLens only releases aggregates",
            hint=f"Ask for counts, sums or averages, for example: {EXAMPLE}",
        )
    if isinstance(node, exp.Select) and node.parent is not None:
        raise FeatureNotAllowed("subqueries are not supported", hint=f"Ask one flat query, e.g. {EXAMPLE}")
    if isinstance(node, exp.Distinct) and isinstance(node.parent, exp.Count):
        return  # checked with its COUNT below
    if isinstance(node, exp.Anonymous) and node.name.lower() in NOW_FUNCTIONS and not node.expressions:
        return  # transaction_timestamp() and its kin: resolved by resolve_clock
    if type(node) not in ALLOWED_NODES:
        reason = _NAMED_REFUSALS.get(type(node))
        if reason is None and isinstance(node, exp.Func):
            name = node.sql_name() if not isinstance(node, exp.Anonymous) else node.name
            reason = f'function "{name.lower()}" is not allowed in a DP query'
        reason = reason or f"{node.key.upper()} is not supported in a DP query"
        raise FeatureNotAllowed(
            reason,
            hint="Allowed aggregates: COUNT(*), COUNT(column), COUNT(DISTINCT unit), SUM, AVG, VARIANCE, "
            "STDDEV.",
        )
    if isinstance(node, exp.Cast) and node.to.this not in CAST_TARGETS:
        raise FeatureNotAllowed(f"casting to {node.to.sql('postgres')} is not supported")
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct):
        inner = node.this.expressions
        if len(inner) != 1 or not isinstance(inner[0], exp.Column):
            raise FeatureNotAllowed("COUNT(DISTINCT ...) takes one column", hint="COUNT(DISTINCT user_id)")
    if isinstance(node, exp.Limit):
        limit = node.expression
        if not (isinstance(limit, exp.Literal) and not limit.is_string and limit.this.isdigit()):
            raise FeatureNotAllowed("LIMIT must be a whole number", hint="For example: LIMIT 10")
