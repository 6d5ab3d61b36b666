"""Time buckets for GROUP BY date_trunc(unit, column): the public list of bucket starts.

The domain comes from the bounds the policy declares on the column, never from the data, so which
buckets are released does not depend on private values.

>>> [str(b.date()) for b in bucket_starts("quarter", dt.date(2020, 2, 10), dt.date(2020, 12, 31))]
['2020-01-01', '2020-04-01', '2020-07-01', '2020-10-01']
>>> len(bucket_starts("week", dt.date(2024, 1, 1), dt.date(2024, 12, 31)))
53
"""

from __future__ import annotations

import datetime as dt

UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute")


def truncate(moment: dt.datetime, unit: str) -> dt.datetime:
    """PostgreSQL's date_trunc for these units (weeks start on Monday)."""
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    day = dt.datetime(moment.year, moment.month, moment.day)
    if unit == "day":
        return day
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unsupported unit {unit}")


def next_start(start: dt.datetime, unit: str) -> dt.datetime:
    if unit == "hour":
        return start + dt.timedelta(hours=1)
    if unit == "minute":
        return start + dt.timedelta(minutes=1)
    if unit == "day":
        return start + dt.timedelta(days=1)
    if unit == "week":
        return start + dt.timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    total = start.year * 12 + start.month - 1 + months
    return start.replace(year=total // 12, month=total % 12 + 1)


def bucket_starts(unit: str, lower: dt.date, upper: dt.date, limit: int = 100_000) -> list[dt.datetime]:
    """Every bucket that intersects [lower, upper], in order; stops after `limit` buckets."""
    low = lower if isinstance(lower, dt.datetime) else dt.datetime(lower.year, lower.month, lower.day)
    high = upper if isinstance(upper, dt.datetime) else dt.datetime(upper.year, upper.month, upper.day)
    out = []
    current = truncate(low, unit)
    while current <= high and len(out) < limit:
        out.append(current)
        current = next_start(current, unit)
    return out
