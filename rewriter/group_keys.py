"""What a query groups by: public-value columns and time buckets, each with its public domain."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlglot import exp

from pgerrors import AccessDenied, FeatureNotAllowed
from rewriter.buckets import UNITS, bucket_starts
from rewriter.policy import Dataset

TRUNC_NODES = (exp.TimestampTrunc, exp.DateTrunc)


PART_VALUES: dict[str, tuple[int, ...]] = {  # EXTRACT(part FROM column): the values each part can take
    "quarter": tuple(range(1, 5)), "month": tuple(range(1, 13)), "day": tuple(range(1, 32)),
    "dow": tuple(range(0, 7)), "isodow": tuple(range(1, 8)), "hour": tuple(range(0, 24)),
    "minute": tuple(range(0, 60)), "week": tuple(range(1, 54)), "doy": tuple(range(1, 367)),
}  # fmt: skip
MAX_BUCKET_SECONDS = 366 * 86400


@dataclass(frozen=True)
class KeySpec:
    expression: exp.Expression  # as it stands in the checked tree
    column: str
    unit: str | None  # a date_trunc unit, or None for a column with group_by_values
    bins: tuple[float, float, int] | None = None  # width_bucket(column, low, high, count)
    labels: tuple[str | float, ...] | None = None  # CASE WHEN ... THEN 'label' ... END: the labels
    seconds: int | None = None  # floor(extract(epoch from column) / n) * n: epoch-second buckets
    part: str | None = None  # EXTRACT(part FROM column): year, quarter, month, dow, hour, ...
    as_date: bool = False  # CAST(date_trunc(unit, column) AS date)

    @property
    def key(self) -> str:
        return key_of(self.expression)

    @property
    def is_time(self) -> bool:
        """Derived from a time column: the column's declared range bounds the rows and the domain."""
        return self.unit is not None or self.seconds is not None or self.part is not None

    def domain(
        self,
        dataset: Dataset,
        limit: int,
        where: exp.Expression | None = None,
        stated: tuple[dt.datetime, dt.datetime] | None = None,
    ) -> tuple[str | int | bool | dt.datetime, ...]:
        """The public groups; time buckets are narrowed to literal bounds the query itself states, or
        to `stated` (a bucketed question's whole buckets, [start, end))."""
        if self.labels is not None:
            return self.labels
        spec = dataset.columns[self.column]
        if self.bins is not None:  # PostgreSQL's width_bucket: 0 below, count + 1 at or above high
            return tuple(range(0, self.bins[2] + 2))
        if not self.is_time:
            values = tuple(spec.group_by_values or ())
            stated = literal_values(where, self.column) if where is not None else None
            return values if stated is None else tuple(v for v in values if str(v) in stated)
        if self.part is not None and self.part != "year":
            return PART_VALUES[self.part]
        if stated is not None:
            low, high = stated[0], stated[1] - dt.timedelta(microseconds=1)
        else:
            low, high = self.time_range(dataset, where)
        if low > high:
            return ()
        if self.part == "year":
            return tuple(range(low.year, high.year + 1))[:limit]
        if self.seconds is not None:
            return epoch_bucket_starts(self.seconds, low, high, limit)
        assert self.unit is not None
        starts = bucket_starts(self.unit, low, high, limit)
        return tuple(s.date() for s in starts) if self.as_date else tuple(starts)

    def time_range(self, dataset: Dataset, where: exp.Expression | None) -> tuple[dt.datetime, dt.datetime]:
        """The moments the key's rows can have: the declared range (a `latest` date includes its
        whole day), narrowed to the bounds the query's own literals state."""
        spec = dataset.columns[self.column]
        assert spec.earliest is not None and spec.latest is not None
        low, high = _as_datetime(spec.earliest), _as_datetime(spec.latest)
        if not isinstance(spec.latest, dt.datetime):
            high += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        stated_low, stated_high = literal_range(where, self.column) if where is not None else (None, None)
        low = max(low, stated_low) if stated_low else low
        high = min(high, stated_high) if stated_high else high
        return low, high


EPOCH = dt.datetime(1970, 1, 1)


def epoch_bucket_starts(seconds: int, low: dt.datetime, high: dt.datetime, limit: int) -> tuple[float, ...]:
    """Starts (epoch seconds, as floats: what floor(extract(epoch ...)/n)*n gives) of the n-second
    buckets that intersect [low, high].

    >>> epoch_bucket_starts(3600, dt.datetime(2024, 1, 1, 0, 30), dt.datetime(2024, 1, 1, 2, 0), 10)
    (1704067200.0, 1704070800.0, 1704074400.0)
    """
    first = math.floor((low - EPOCH).total_seconds() / seconds) * seconds
    last = (high - EPOCH).total_seconds()
    count = min(limit, max(0, math.floor((last - first) / seconds) + 1))
    return tuple(float(first + i * seconds) for i in range(count))


def key_of(expression: exp.Expression) -> str:
    """A comparable form of a group expression (select items are matched to GROUP BY items by it)."""
    return expression.sql(dialect="postgres", normalize=True)


def group_keys(tree: exp.Select, dataset: Dataset, name: str) -> list[KeySpec]:
    group = tree.args.get("group")
    return [_key(item, dataset, name) for item in (group.expressions if group is not None else [])]


def _key(item: exp.Expression, dataset: Dataset, name: str) -> KeySpec:
    if isinstance(item, exp.Column) and item.table:
        column = dataset.columns[item.name]
        if column.group_by_values is None or item.name == dataset.privacy_unit:
            raise AccessDenied(
                f'column "{item.name}" of dataset "{name}" may not be used in GROUP BY',
                hint=_groupable_hint(dataset),
            )
        return KeySpec(item, item.name, None)
    if isinstance(item, TRUNC_NODES) and isinstance(item.this, exp.Column) and item.this.table:
        unit = str(item.args.get("unit").name if item.args.get("unit") is not None else "").lower()
        column = dataset.columns[item.this.name]
        if not column.bucketable:
            raise AccessDenied(
                f'column "{item.this.name}" of dataset "{name}" has no declared time range for buckets',
                hint=_groupable_hint(dataset),
            )
        if unit not in UNITS:
            raise FeatureNotAllowed(
                f"date_trunc unit '{unit}' is not supported", hint=f"Use one of: {', '.join(UNITS)}."
            )
        return KeySpec(item, item.this.name, unit)
    if (
        isinstance(item, exp.Cast)
        and item.to.this == exp.DataType.Type.DATE
        and isinstance(item.this, TRUNC_NODES)
    ):
        inner = _key(item.this, dataset, name)
        return KeySpec(item, inner.column, inner.unit, as_date=True)
    epoch = _epoch_bucket(item)
    if epoch is not None:
        column, seconds = epoch
        _time_column(column, dataset, name)
        return KeySpec(item, column.name, None, seconds=seconds)
    if isinstance(item, exp.Extract) and isinstance(item.expression, exp.Column) and item.expression.table:
        part = item.this.name.lower() if isinstance(item.this, exp.Var) else ""
        if part not in PART_VALUES and part != "year":
            raise FeatureNotAllowed(
                f"EXTRACT({part or '?'} FROM ...) is not supported in GROUP BY",
                hint=f"Extract one of: year, {', '.join(PART_VALUES)}.",
            )
        _time_column(item.expression, dataset, name)
        return KeySpec(item, item.expression.name, None, part=part)
    if isinstance(item, exp.WidthBucket) and isinstance(item.this, exp.Column) and item.this.table:
        return KeySpec(item, item.this.name, None, _bins(item, dataset, name))
    if isinstance(item, exp.Case) and item.this is None:
        return KeySpec(item, "", None, None, _labels(item, dataset))
    raise FeatureNotAllowed(
        "GROUP BY accepts public columns, time buckets (date_trunc(unit, column), "
        "floor(extract(epoch from column) / n) * n, EXTRACT(part FROM column)) and "
        "width_bucket(column, low, high, n)",
        hint="For example: GROUP BY department, or GROUP BY date_trunc('month', hire_date)",
    )


def _time_column(column: exp.Column, dataset: Dataset, name: str) -> None:
    if not dataset.columns[column.name].bucketable:
        raise AccessDenied(
            f'column "{column.name}" of dataset "{name}" has no declared time range for buckets',
            hint=_groupable_hint(dataset),
        )


def _epoch_bucket(item: exp.Expression) -> tuple[exp.Column, int] | None:
    """Grafana's $__timeGroup: floor(extract(epoch from column) / n) * n, with the same whole n."""
    if not isinstance(item, exp.Mul):
        return None
    floor, width = item.this, item.expression
    if isinstance(width, exp.Floor):
        floor, width = width, floor
    if not (isinstance(floor, exp.Floor) and isinstance(floor.this, exp.Div)):
        return None
    extract, divisor = floor.this.this, floor.this.expression
    if not (
        isinstance(extract, exp.Extract)
        and isinstance(extract.this, exp.Var)
        and extract.this.name.lower() == "epoch"
        and isinstance(extract.expression, exp.Column)
        and extract.expression.table
    ):
        return None
    seconds = [_whole_number(node) for node in (divisor, width)]
    if seconds[0] is None or seconds[0] != seconds[1] or not 1 <= seconds[0] <= MAX_BUCKET_SECONDS:
        raise FeatureNotAllowed(
            "a time bucket floor(extract(epoch from column) / n) * n needs the same whole n of seconds "
            f"on both sides, from 1 to {MAX_BUCKET_SECONDS}",
            hint="For hourly buckets: floor(extract(epoch from ts) / 3600) * 3600",
        )
    return extract.expression, int(seconds[0])


def _whole_number(node: exp.Expression) -> float | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        value = float(node.this)
        return value if value.is_integer() else None
    return None


def _groupable_hint(dataset: Dataset) -> str:
    plain = [c for c, spec in dataset.columns.items() if spec.group_by_values is not None]
    buckets = [f"date_trunc(unit, {c})" for c, spec in dataset.columns.items() if spec.bucketable]
    buckets += [f"floor(extract(epoch from {c}) / n) * n" for c, s in dataset.columns.items() if s.bucketable]
    return f"You can group by: {', '.join(plain + buckets) or 'nothing in this dataset'}."


def _as_datetime(value: dt.date) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)


def literal_range(where: exp.Expression, column: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Bounds on `column` stated with literals in top-level AND conditions of WHERE (query text only).

    >>> import sqlglot
    >>> w = sqlglot.parse_one("SELECT 1 WHERE d >= '2020-01-01' AND d < '2021-01-01T00:00:00Z'").args["where"]
    >>> [str(v) for v in literal_range(w.this, "d")]
    ['2020-01-01 00:00:00', '2021-01-01 00:00:00']
    """
    low: dt.datetime | None = None
    high: dt.datetime | None = None
    for condition in where.flatten() if isinstance(where, exp.And) else [where]:
        bounds: list[tuple[str, exp.Expression]] = []
        if isinstance(condition, exp.Between) and _is_column(condition.this, column):
            bounds = [(">=", condition.args["low"]), ("<=", condition.args["high"])]
        elif isinstance(condition, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ)):
            op = {exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=", exp.EQ: "="}[type(condition)]
            if _is_column(condition.this, column):
                bounds = [(op, condition.expression)]
            elif _is_column(condition.expression, column):
                bounds = [({">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}[op], condition.this)]
        for op, value in bounds:
            moment = _literal_moment(value)
            if moment is None:
                continue
            if op in (">", ">=", "="):
                low = moment if low is None else max(low, moment)
            if op in ("<", "<=", "="):
                high = moment if high is None else min(high, moment)
    return low, high


def _is_column(node: exp.Expression, column: str) -> bool:
    return isinstance(node, exp.Column) and node.name == column


def _literal_moment(node: exp.Expression) -> dt.datetime | None:
    while isinstance(node, (exp.Cast, exp.Paren)):
        node = node.this
    if not (isinstance(node, exp.Literal) and node.is_string):
        return None
    text = node.this.strip().replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=None)


def _bins(item: exp.WidthBucket, dataset: Dataset, name: str) -> tuple[float, float, int]:
    """width_bucket's public bins come from the query's literals: any numeric column may be binned."""
    column = dataset.columns[item.this.name]
    if column.type not in ("bigint", "integer", "double") or item.this.name == dataset.privacy_unit:
        raise AccessDenied(
            f'column "{item.this.name}" of dataset "{name}" cannot be binned',
            hint="width_bucket applies to numeric columns other than the privacy unit.",
        )
    values = []
    for arg in ("min_value", "max_value", "num_buckets"):
        node = item.args.get(arg)
        negative = isinstance(node, exp.Neg)
        literal = node.this if negative else node
        if not (isinstance(literal, exp.Literal) and not literal.is_string):
            raise FeatureNotAllowed(
                "width_bucket takes literal bounds and a literal bucket count",
                hint="For example: width_bucket(salary, 20000, 250000, 10)",
            )
        values.append(-float(literal.this) if negative else float(literal.this))
    low, high, count = values
    # Every literal that shapes the plan is checked before anything is built from it: the engine
    # computes (x - low) / (high - low), which must stay finite for every row, and the domain has
    # count + 2 buckets, which must fit the policy's group limit.
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low) and low < high):
        raise FeatureNotAllowed(
            "width_bucket needs finite bounds with low < high",
            hint="For example: width_bucket(salary, 20000, 250000, 10)",
        )
    if not (count.is_integer() and 1 <= count <= dataset.max_groups - 2):
        raise FeatureNotAllowed(
            f"width_bucket needs a whole number of buckets from 1 to {dataset.max_groups - 2} "
            f"(with the two outer buckets, at most {dataset.max_groups} groups, the most the policy allows)",
            hint="For example: width_bucket(salary, 20000, 250000, 10)",
        )
    return low, high, int(count)


def literal_values(where: exp.Expression, column: str) -> set[str] | None:
    """Values `column` is restricted to by literal `=` / `IN` conditions ANDed at the top of WHERE.

    >>> import sqlglot
    >>> w = sqlglot.parse_one("SELECT 1 WHERE d IN ('a', 'b') AND x > 1 AND d <> 'c'").args["where"]
    >>> sorted(literal_values(w.this, "d"))
    ['a', 'b']
    """
    allowed: set[str] | None = None
    for condition in where.flatten() if isinstance(where, exp.And) else [where]:
        values: list[exp.Expression] | None = None
        if isinstance(condition, exp.EQ):
            if _is_column(condition.this, column):
                values = [condition.expression]
            elif _is_column(condition.expression, column):
                values = [condition.this]
        elif (
            isinstance(condition, exp.In)
            and _is_column(condition.this, column)
            and not condition.args.get("query")
        ):
            values = list(condition.expressions)
        if values is None or not all(isinstance(v, exp.Literal) for v in values):
            continue
        stated = {v.this for v in values}
        allowed = stated if allowed is None else allowed & stated
    return allowed


def _labels(case: exp.Case, dataset: Dataset) -> tuple[str | float, ...]:
    """CASE WHEN <filter> THEN <literal> ... [ELSE <literal>] END: conditions follow the WHERE grammar
    (so they cannot fail on data) and the labels, written in the query, are the public groups."""
    from rewriter.rules.restrict_filters import check_condition

    types = {name: spec.type for name, spec in dataset.columns.items()}
    labels: list[str | float] = []
    for branch in case.args.get("ifs") or []:
        check_condition(branch.this, types)
        labels.append(_label(branch.args.get("true")))
    default = case.args.get("default")
    if default is not None:
        labels.append(_label(default))
    if not labels:
        raise FeatureNotAllowed("a CASE in GROUP BY needs at least one WHEN ... THEN")
    if len({type(label) for label in labels}) > 1:
        raise FeatureNotAllowed("CASE labels in GROUP BY must all be text or all be numbers")
    return tuple(dict.fromkeys(labels))  # each label once, in the order written


def _label(node: exp.Expression | None) -> str | float:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else float(node.this)
    raise FeatureNotAllowed(
        "CASE in GROUP BY must produce literal labels",
        hint="For example: GROUP BY CASE WHEN age < 30 THEN 'young' WHEN age < 50 THEN 'middle' "
        "ELSE 'senior' END",
    )
