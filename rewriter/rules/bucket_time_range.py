"""A time-bucketed question is the question without its time range, asked of whole buckets.

A dashboard panel re-sends `... WHERE ts BETWEEN <now-6h> AND <now> GROUP BY <hourly bucket of ts>`
on every refresh, with a range that moves with the clock. When the query groups by exactly one time
bucket (`date_trunc(unit, ts)` or `floor(extract(epoch from ts) / n) * n`), the literal range on that
column is taken out of the question and widened to whole buckets: the WHERE keeps every other
condition and gets `ts >= $a AND ts < $b`, two parameters the proxy binds to the buckets it needs.
So the plan, and the key its stored releases are found by, are the same for every range; each
bucket's noisy measures are released once and served again to any range that contains it
(`answers/buckets.py`). A range that cut a bucket says so (`Bucketing.widened`).

>>> import sqlglot
>>> from rewriter.policy import load_policy
>>> from rewriter.context import RewriteContext
>>> from pathlib import Path
>>> policy = load_policy(Path(__file__).parents[2] / "policies" / "demo.yaml")
>>> tree = sqlglot.parse_one("SELECT date_trunc('month', visits.visit_date), COUNT(*) FROM visits "
...     "WHERE visits.visit_date >= '2024-03-10' AND visits.channel = 'web' GROUP BY 1", read="postgres")
>>> tree.args["group"] = exp.Group(expressions=[tree.expressions[0].copy()])
>>> out = bucket_time_range(tree, RewriteContext(policy, "analyst", "analyst"))
>>> out.args["where"].sql("postgres")
"WHERE visits.channel = 'web' AND visits.visit_date >= $1 AND visits.visit_date < $2"
>>> b = out.meta["bucketing"]; (str(b.start), str(b.end), b.widened)
('2024-03-01 00:00:00', '2025-01-01 00:00:00', True)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from rewriter.buckets import bucket_starts, next_start, truncate
from rewriter.context import RewriteContext
from rewriter.group_keys import EPOCH, KeySpec, group_keys, literal_range
from rewriter.tree import dataset_name, parameter_index, parameters

RANGE_NODES = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


@dataclass(frozen=True)
class Bucketing:
    column: str
    key: str  # key_of the bucket key: which of the plan's keys it is
    start: dt.datetime  # the widened range [start, end): whole buckets
    end: dt.datetime
    parameters: tuple[int, int]  # 1-based indices of the $a, $b the range is bound to
    widened: bool  # the query's own range cut a bucket
    date_column: bool  # the column holds dates: the range is bound as dates
    unit: str | None  # date_trunc's unit, or
    seconds: int | None  # the width of epoch-second buckets

    def span(self, values: Sequence[dt.datetime | dt.date | float]) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) covering the buckets whose key values are `values` (and any between them)."""
        starts = [_moment(v) for v in values]
        last = max(starts)
        end = last + dt.timedelta(seconds=self.seconds) if self.seconds else next_start(last, self.unit or "")
        return min(starts), end

    def bound(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime | dt.date]:
        """The values of $a and $b for the buckets [start, end)."""
        if not self.date_column:
            return [start, end]
        return [_next_date(start), _next_date(end)]  # rows of a date column sit at midnight


def bucket_time_range(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    name = dataset_name(tree)
    dataset = ctx.dataset(name)
    buckets = [k for k in group_keys(tree, dataset, name) if k.unit is not None or k.seconds is not None]
    if len(buckets) != 1:
        return tree
    key = buckets[0]
    where = tree.args.get("where")
    condition = where.this if where is not None else None
    low, high = key.time_range(dataset, condition)
    if low > high:
        return tree  # nothing can match: the plan's empty domain says so
    start, end = _whole_buckets(key, low, high)
    stated_low, stated_high = literal_range(condition, key.column) if condition is not None else (None, None)
    column = _column_of(tree, key.column)
    kept = [c for c in _conjuncts(condition) if not _is_stated_range(c, key.column)]
    count = max((parameter_index(p) + 1 for p in parameters(tree)), default=0)
    a, b = count + 1, count + 2
    kept += [
        exp.GTE(this=column.copy(), expression=exp.Parameter(this=exp.Literal.number(a))),
        exp.LT(this=column.copy(), expression=exp.Parameter(this=exp.Literal.number(b))),
    ]
    tree.set("where", exp.Where(this=exp.and_(*kept)))
    widened = (stated_low is not None and start < stated_low) or (
        stated_high is not None and end > stated_high + dt.timedelta(microseconds=1)
    )
    tree.meta["bucketing"] = Bucketing(
        column=key.column, key=key.key, start=start, end=end, parameters=(a, b), widened=widened,
        date_column=dataset.columns[key.column].type == "date", unit=key.unit, seconds=key.seconds,
    )  # fmt: skip
    return tree


def _whole_buckets(key: KeySpec, low: dt.datetime, high: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end): from the start of the bucket holding `low` to the end of the one holding `high`."""
    if key.seconds is not None:
        first = math.floor((low - EPOCH).total_seconds() / key.seconds) * key.seconds
        last = math.floor((high - EPOCH).total_seconds() / key.seconds) * key.seconds + key.seconds
        return EPOCH + dt.timedelta(seconds=first), EPOCH + dt.timedelta(seconds=last)
    assert key.unit is not None
    starts = bucket_starts(key.unit, low, high, limit=1)
    return starts[0], next_start(truncate(high, key.unit), key.unit)


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    if condition is None:
        return []
    return [c.copy() for c in (condition.flatten() if isinstance(condition, exp.And) else [condition])]


def _is_stated_range(condition: exp.Expression, column: str) -> bool:
    """A literal bound on the bucket column (what `literal_range` reads): replaced by whole buckets."""
    if not isinstance(condition, RANGE_NODES):
        return False
    low, high = literal_range(condition, column)
    return low is not None or high is not None


def _column_of(tree: exp.Select, name: str) -> exp.Column:
    for column in tree.find_all(exp.Column):
        if column.name == name and column.table:
            return column
    raise AssertionError(f"bucket column {name} not in the tree")


def _moment(value: dt.datetime | dt.date | float) -> dt.datetime:
    """A bucket's start from its key value: a timestamp, a date, or epoch seconds."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return EPOCH + dt.timedelta(seconds=float(value))


def _next_date(moment: dt.datetime) -> dt.date:
    """The first date at or after `moment` (a date d is >= moment iff d >= this)."""
    day = moment.date()
    return day if moment == dt.datetime(day.year, day.month, day.day) else day + dt.timedelta(days=1)
