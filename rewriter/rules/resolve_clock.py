"""Relative times become literals, read from the server's clock (never from the data).

Dashboards and BI tools filter on times relative to now: `now() - interval '6 hours'`,
`CURRENT_DATE - 7`, `to_timestamp(1494410783)` (Grafana's epoch macros), `CURRENT_TIMESTAMP`. Each
is replaced by the timestamp or date literal it denotes at `ctx.now` (UTC), so the rest of the
pipeline sees the same literal a client could have written, and the question is the one those
literals ask. Anything else built on the clock (arithmetic with a column, an interval unit we do not
know) is refused.

>>> import sqlglot, datetime as dt
>>> tree = sqlglot.parse_one("SELECT 1 WHERE t >= now() - interval '6 hours' AND d > CURRENT_DATE - 7",
...                          read="postgres")
>>> resolve_times(tree, dt.datetime(2024, 3, 10, 12, 30)).sql("postgres")
"SELECT 1 WHERE t >= CAST('2024-03-10 06:30:00' AS TIMESTAMP) AND d > CAST('2024-03-03' AS DATE)"
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.intervals import MONTHS, SECONDS, parse_months

NOW_NODES = (exp.CurrentTimestamp, exp.Localtimestamp)
NOW_FUNCTIONS = frozenset({"transaction_timestamp", "statement_timestamp", "clock_timestamp"})
HINT = "Write times as literals ('2024-03-01'), or relative to now: now() - interval '6 hours'."


def resolve_clock(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    now = ctx.now if ctx.now is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    resolved = resolve_times(tree, now)
    assert isinstance(resolved, exp.Select)
    return resolved


def uses_clock(tree: exp.Expression) -> bool:
    """Whether a statement's meaning depends on when it runs (its plan must not be reused later)."""
    return any(_is_now(node) or isinstance(node, exp.CurrentDate) for node in tree.walk())


def resolve_times(tree: exp.Expression, now: dt.datetime) -> exp.Expression:
    def replace(node: exp.Expression) -> exp.Expression:
        moment = _moment(node, now)
        if moment is None:
            return node
        if isinstance(moment, dt.datetime):
            return exp.cast(exp.Literal.string(moment.isoformat(sep=" ")), "TIMESTAMP")
        return exp.cast(exp.Literal.string(moment.isoformat()), "DATE")

    return tree.transform(replace, copy=False)


def _moment(node: exp.Expression, now: dt.datetime) -> dt.datetime | dt.date | None:
    """The time a clock expression denotes; None for nodes that are not clock expressions."""
    if _is_now(node):
        return now
    if isinstance(node, exp.CurrentDate):
        return now.date()
    if isinstance(node, exp.UnixToTime) and _number(node.this) is not None:
        seconds = _number(node.this)
        assert seconds is not None
        if not -1e11 < seconds < 1e11:
            raise FeatureNotAllowed("to_timestamp needs seconds between years 0 and 5000", hint=HINT)
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    if isinstance(node, (exp.Add, exp.Sub)) and _is_clock(node.this):
        base = _moment(node.this, now)
        assert base is not None
        sign = -1 if isinstance(node, exp.Sub) else 1
        offset = node.expression
        if isinstance(offset, exp.Interval):
            return _shift(base, _interval(offset), sign)
        days = _number(offset)
        if isinstance(base, dt.date) and not isinstance(base, dt.datetime) and days is not None:
            if not days.is_integer() or abs(days) > 3_000_000:
                raise FeatureNotAllowed("CURRENT_DATE ± n needs a whole number of days", hint=HINT)
            return base + dt.timedelta(days=sign * int(days))
        raise FeatureNotAllowed("now() and CURRENT_DATE combine only with an interval", hint=HINT)
    return None


def _is_now(node: exp.Expression) -> bool:
    return isinstance(node, NOW_NODES) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in NOW_FUNCTIONS and not node.expressions
    )


def _is_clock(node: exp.Expression) -> bool:
    if _is_now(node) or isinstance(node, exp.CurrentDate):
        return True
    return isinstance(node, (exp.Add, exp.Sub)) and _is_clock(node.this)


def _number(node: exp.Expression) -> float | None:
    negative = isinstance(node, exp.Neg)
    literal = node.this if negative else node
    if isinstance(literal, exp.Literal) and not literal.is_string:
        value = float(literal.this)
        return -value if negative else value
    return None


def _interval(node: exp.Interval) -> list[tuple[float, str]]:
    """`interval '1 day 6 hours'`, `interval '6' hour`, `interval '90 minutes'` as (amount, unit)s."""
    text = node.this.name if isinstance(node.this, exp.Literal) else ""
    unit = node.args.get("unit")
    if unit is not None:
        text = f"{text} {unit.name}"
    try:
        return parse_months(text)
    except ValueError as err:
        raise FeatureNotAllowed(str(err), hint=HINT) from None


def _shift(base: dt.date, parts: list[tuple[float, str]], sign: int) -> dt.datetime | dt.date:
    moment = base if isinstance(base, dt.datetime) else dt.datetime(base.year, base.month, base.day)
    for amount, unit in parts:
        if unit in MONTHS:
            if not amount.is_integer():
                raise FeatureNotAllowed("months and years in an interval must be whole", hint=HINT)
            moment = _add_months(moment, sign * int(amount) * MONTHS[unit])
        else:
            seconds = sign * amount * SECONDS[unit]
            if abs(seconds) > 1e11:
                raise FeatureNotAllowed("that interval is too long", hint=HINT)
            moment = moment + dt.timedelta(seconds=seconds)
    return moment


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """PostgreSQL's month arithmetic: the day is clamped to the target month's last day."""
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise FeatureNotAllowed("that interval reaches outside years 1 to 9999", hint=HINT)
    first_of_next = dt.datetime(year + (month == 11), (month + 1) % 12 + 1, 1)
    last_day = (first_of_next - dt.timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))
