"""WHERE must be a typed filter grammar that cannot fail at run time on any data.

A filter whose success depends on the data leaks un-noised information: `department = 1` fails in
DuckDB only if some department is not a number, `age * 1e18` overflows only for some ages. So WHERE
may only combine, with AND / OR / NOT:

    column <op> value      value <op> column      (op: = <> < <= > >=)
    column [NOT] BETWEEN value AND value
    column [NOT] IN (value, ...)
    column IS [NOT] NULL
    column [NOT] LIKE / ILIKE value              (text columns)
    boolean_column,  TRUE,  FALSE

where a value is a literal, a `$n` parameter, or a cast of one; never a column or arithmetic on
one. `clip_values` then TRY_CASTs every value to its column's type, so no comparison casts a column.
"""

from __future__ import annotations

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.tree import dataset_name

COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
HINT = (
    "Filter with column <op> value, BETWEEN, IN, IS NULL or LIKE, e.g. "
    "WHERE hire_date >= '2020-01-01' AND department IN ('Sales', 'Legal')"
)


def restrict_filters(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    where = tree.args.get("where")
    if where is not None:
        columns = ctx.dataset(dataset_name(tree)).columns
        _condition(where.this, {name: spec.type for name, spec in columns.items()})
        _column_first(where)
        _sorted_conjuncts(where)
    return tree


FLIPPED: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.EQ, exp.NEQ: exp.NEQ, exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE,
}  # fmt: skip


def _sorted_conjuncts(where: exp.Where) -> None:
    """`a AND b` and `b AND a` are one question: top-level conditions in one order (the filter
    grammar cannot fail, so their order never changes what runs)."""
    condition = where.this
    inner = condition.this if isinstance(condition, exp.Paren) else condition
    if isinstance(inner, exp.And):
        parts = sorted(inner.flatten(), key=lambda part: part.sql("postgres"))
        where.set("this", exp.and_(*(p.copy() for p in parts)))


def _column_first(where: exp.Expression) -> None:
    """`30 < age` becomes `age > 30`: one question, however the comparison is written."""
    for node in list(where.find_all(*COMPARISONS)):
        if not isinstance(node.this, exp.Column) and isinstance(node.expression, exp.Column):
            flipped = FLIPPED[type(node)](this=node.expression.copy(), expression=node.this.copy())
            node.replace(flipped)


# The arguments each accepted node may carry; any other (ESCAPE, SYMMETRIC, a subquery, ...) is refused.
KNOWN_ARGS: dict[type[exp.Expression], frozenset[str]] = {
    exp.Between: frozenset({"this", "low", "high"}),
    exp.In: frozenset({"this", "expressions", "negate"}),
    exp.Is: frozenset({"this", "expression", "negate"}),
    exp.Like: frozenset({"this", "expression", "negate"}),
    exp.ILike: frozenset({"this", "expression", "negate"}),
    **{op: frozenset({"this", "expression"}) for op in COMPARISONS},
}


def check_condition(node: exp.Expression, types: dict[str, str]) -> None:
    """Refuse `node` unless it follows the filter grammar above (also used for CASE in GROUP BY)."""
    _condition(node, types)


def _condition(node: exp.Expression, types: dict[str, str]) -> None:
    known = KNOWN_ARGS.get(type(node))
    if known is not None:
        extra = [key for key, value in node.args.items() if value and key not in known]
        if extra:
            raise FeatureNotAllowed(
                f"{node.key.upper()} with {', '.join(extra).upper()} is not supported", hint=HINT
            )
    if isinstance(node, (exp.And, exp.Or)):
        _condition(node.this, types)
        _condition(node.expression, types)
    elif isinstance(node, (exp.Not, exp.Paren)):
        _condition(node.this, types)
    elif isinstance(node, exp.Boolean):
        return
    elif isinstance(node, exp.Column):
        if types[node.name] != "boolean":
            raise FeatureNotAllowed(f'column "{node.name}" is not a boolean condition', hint=HINT)
    elif isinstance(node, COMPARISONS):
        if isinstance(node.this, exp.Column):
            _value(node.expression)
        elif isinstance(node.expression, exp.Column):
            _value(node.this)
        else:
            raise FeatureNotAllowed("a comparison in WHERE needs a column on one side", hint=HINT)
    elif isinstance(node, exp.Between):
        _column(node.this)
        _value(node.args["low"])
        _value(node.args["high"])
    elif isinstance(node, exp.In):
        _column(node.this)
        if node.args.get("query") is not None or not node.expressions:
            raise FeatureNotAllowed("IN needs a list of values", hint=HINT)
        for value in node.expressions:
            _value(value)
    elif isinstance(node, exp.Is):
        _column(node.this)
        if not isinstance(node.expression, exp.Null):
            raise FeatureNotAllowed("only IS NULL and IS NOT NULL are supported", hint=HINT)
    elif isinstance(node, (exp.Like, exp.ILike)):
        column = _column(node.this)
        if types[column.name] != "text":
            raise FeatureNotAllowed("LIKE applies to text columns", hint=HINT)
        _value(node.expression)
    else:
        raise FeatureNotAllowed(f"{node.key.upper()} is not supported in WHERE", hint=HINT)


def _column(node: exp.Expression) -> exp.Column:
    if not isinstance(node, exp.Column):
        raise FeatureNotAllowed("this filter needs a plain column on its left", hint=HINT)
    return node


def _value(node: exp.Expression) -> None:
    while isinstance(node, (exp.Cast, exp.Paren, exp.Neg)):
        node = node.this
    if not isinstance(node, (exp.Literal, exp.Parameter, exp.Null, exp.Boolean)):
        raise FeatureNotAllowed(
            "WHERE compares columns with literal values or parameters only "
            "(no expressions over columns, no column-to-column comparisons)",
            hint=HINT,
        )
