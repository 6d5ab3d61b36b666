"""The BI tools' DAU and MAU shapes, read as `privacylens.dau` / `privacylens.mau` calls:

    SELECT date_trunc('day', ts) AS day, COUNT(DISTINCT user_id) AS users
    FROM activity WHERE ts >= '2025-10-01' AND ts < '2025-10-08' GROUP BY 1 ORDER BY 1

    SELECT COUNT(DISTINCT user_id) AS active FROM activity
    WHERE ts >= '2025-10-02' AND ts < '2025-11-01'       -- MAU: the 30-day window ending 31 October

The key may be `date_trunc('day', <time>)` (a timestamp) or `CAST(<time> AS date)` / `<time>::date`
(a date); the measure `COUNT(DISTINCT <user id>)`; the filter a range on the time column with
literal or `$n` bounds (`>=`, `>`, `<`, `<=`, `BETWEEN`), widened to whole days as time buckets are
(parameters are read as text, so any timestamp a driver sends is taken at its UTC day). The
answer is the DAU series of those days, each released once and re-served, with `<name>_ci_low` and
`<name>_ci_high` beside the value. Without GROUP BY, the distinct count over the range is the MAU
window ending on its last day, as long as the range fits `mau.window_days`. Anything else over an
activity dataset is refused with a hint.
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.activity_call import RELEASED, ActivityCall, day_of, moment_of
from rewriter.policy import ActivityDataset

_HINT = (
    "Ask SELECT date_trunc('day', {t}) AS day, COUNT(DISTINCT {u}) FROM {d} WHERE {t} >= '2025-10-01' "
    "AND {t} < '2025-11-01' GROUP BY 1, or SELECT * FROM privacylens.dau('{d}', DATE '2025-10-01', "
    "DATE '2025-10-31')"
)


def bi_dau(tree: exp.Expression, dataset: str, spec: ActivityDataset) -> ActivityCall:
    """The DAU call answering a BI-shaped query over activity dataset `dataset`, or a refusal."""
    hint = _HINT.format(t=spec.time, u=spec.user_id, d=dataset)
    refused = FeatureNotAllowed(
        f"activity dataset {dataset} answers daily distinct users (DAU) and MAU only", hint=hint
    )
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.args.get("having"):
        raise refused
    if len(list(tree.find_all(exp.Table))) != 1:
        raise refused
    if len(tree.expressions) == 1 and tree.args.get("group") is None:
        return _bi_mau(tree, dataset, spec, refused)
    if len(tree.expressions) != 2:
        raise refused
    key = measure = None
    for position, projection in enumerate(tree.expressions):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if _is_day_key(inner, spec.time):
            key = (position, projection, inner)
        elif _is_distinct_users(inner, spec.user_id):
            measure = (position, projection)
    group = tree.args.get("group")
    if key is None or measure is None or group is None or len(group.expressions) != 1:
        raise refused
    grouped = group.expressions[0]
    if not (grouped == key[2] or (isinstance(grouped, exp.Literal) and grouped.this == str(key[0] + 1))):
        raise refused
    first, last, exclusive = _day_range(tree.args.get("where"), spec.time, refused)
    key_name = key[1].alias_or_name if isinstance(key[1], exp.Alias) else "date_trunc"
    value_name = measure[1].alias_or_name if isinstance(measure[1], exp.Alias) else "count"
    key_type = "DATE" if isinstance(key[2], exp.Cast) else "TIMESTAMP"
    columns = [
        f'CAST(day AS {key_type}) AS "{key_name}"',
        f'dau AS "{value_name}"',
        f'dau_ci_low AS "{value_name}_ci_low"',
        f'dau_ci_high AS "{value_name}_ci_high"',
    ]
    if key[0] == 1:
        columns = [columns[1], columns[0], *columns[2:]]
    post = exp.maybe_parse(f"SELECT {', '.join(columns)} FROM {RELEASED}", dialect="duckdb")
    order = tree.args.get("order")
    if order is not None:
        descending = bool(order.expressions[0].args.get("desc"))
        post = post.order_by(f'"{key_name}" {"DESC" if descending else "ASC"}')
    if tree.args.get("limit") is not None:
        post.set("limit", tree.args["limit"].copy())
    arguments = (exp.Literal.string(dataset), first, last)
    return ActivityCall("dau", arguments, post, end_exclusive=exclusive, text_parameters=True)


def _bi_mau(
    tree: exp.Select, dataset: str, spec: ActivityDataset, refused: FeatureNotAllowed
) -> ActivityCall:
    """COUNT(DISTINCT user_id) over a range: the MAU window of the range's days, ending on its last."""
    projection = tree.expressions[0]
    inner = projection.this if isinstance(projection, exp.Alias) else projection
    if not _is_distinct_users(inner, spec.user_id) or tree.args.get("order") or tree.args.get("limit"):
        raise refused
    first, last, exclusive = _day_range(tree.args.get("where"), spec.time, refused)
    if isinstance(first, exp.Literal) and isinstance(last, exp.Literal):
        days = (day_of(last.this) - day_of(first.this)).days + 1
        if not 1 <= days <= spec.mau.window_days:
            raise FeatureNotAllowed(
                f"distinct users over {days} days: MAU windows of {dataset} are 1 to "
                f"{spec.mau.window_days} days",
                hint=f"Narrow the range to at most {spec.mau.window_days} days, or ask "
                f"privacylens.mau('{dataset}', DATE '<last day>', {spec.mau.window_days}).",
            )
    name = projection.alias_or_name if isinstance(projection, exp.Alias) else "count"
    post = exp.maybe_parse(
        f'SELECT mau AS "{name}", mau_ci_low AS "{name}_ci_low", mau_ci_high AS "{name}_ci_high" '
        f"FROM {RELEASED}",
        dialect="duckdb",
    )
    arguments = (exp.Literal.string(dataset), first, last)
    return ActivityCall(
        "mau", arguments, post, end_exclusive=exclusive, text_parameters=True, window_from_range=True
    )


def _is_day_key(node: exp.Expression, time: str) -> bool:
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        unit = node.args.get("unit")
        return _is_column(node.this, time) and unit is not None and unit.name.lower() == "day"
    if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DATE:
        return _is_column(node.this, time)
    return False


def _is_distinct_users(node: exp.Expression, user_id: str) -> bool:
    if not isinstance(node, exp.Count) or not isinstance(node.this, exp.Distinct):
        return False
    values = node.this.expressions
    return len(values) == 1 and _is_column(values[0], user_id)


def _is_column(node: exp.Expression | None, name: str) -> bool:
    return isinstance(node, exp.Column) and node.name.lower() == name


def _day_range(
    where: exp.Where | None, time: str, refused: FeatureNotAllowed
) -> tuple[exp.Expression, exp.Expression, bool]:
    """The range's first and last day as call arguments (a date literal, or the `$n` the client
    binds), and whether the last is a moment the range stops before (`ts < $2`)."""
    if where is None:
        raise FeatureNotAllowed("a DAU series needs a time range: which days?", hint=refused.hint)
    terms = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    first = last = None
    exclusive = False
    for term in terms:
        if isinstance(term, exp.Between) and _is_column(term.this, time):
            first, last = _bound(term.args["low"], refused), _bound(term.args["high"], refused)
            exclusive = False
            continue
        if not isinstance(term, (exp.GTE, exp.GT, exp.LT, exp.LTE)) or not _is_column(term.this, time):
            raise refused
        bound = _bound(term.expression, refused)
        if isinstance(term, (exp.GTE, exp.GT)):
            first = bound
        else:
            last, exclusive = bound, isinstance(term, exp.LT)
    if first is None or last is None:
        raise FeatureNotAllowed("a DAU series needs both ends of its time range", hint=refused.hint)
    if isinstance(last, exp.Literal) and exclusive:  # up to midnight: the day before
        last, exclusive = exp.Literal.string(str(day_of(last.this, before=True))), False
    return first, last, exclusive


def _bound(node: exp.Expression, refused: FeatureNotAllowed) -> exp.Expression:
    """A range bound: the `$n` parameter itself, or a literal moment as its UTC day's literal."""
    value = node.this if isinstance(node, exp.Cast) else node
    if isinstance(value, exp.Parameter):
        return value
    if not isinstance(value, exp.Literal) or not value.is_string:
        raise refused
    try:
        moment = moment_of(value.this)
    except ValueError:
        raise refused from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return exp.Literal.string(moment.isoformat(sep=" "))
