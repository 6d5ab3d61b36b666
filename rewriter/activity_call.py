"""Recognise `privacylens.dau(...)` / `privacylens.mau(...)` queries over activity datasets.

    SELECT * FROM privacylens.dau('activity', DATE '2025-10-01')                 -- one day
    SELECT * FROM privacylens.dau('activity', DATE '2025-10-01', DATE '2025-10-07')  -- a series
    SELECT * FROM privacylens.mau('activity', DATE '2025-10-31', 30)             -- one window
    SELECT * FROM privacylens.mau('activity', DATE '2025-10-01', DATE '2025-10-31', 30)
    SELECT * FROM privacylens.dau_by('activity', 'platform', DATE '2025-10-01' [, DATE ...])
    SELECT * FROM privacylens.mau_by('activity', 'platform', DATE '2025-10-31' [, DATE ...], 30)

The released rows are a table (`released`) the rest of the query post-processes for free:
projections, arithmetic, ORDER BY, LIMIT, WHERE over released columns. That rest may name no other
table and call only functions sqlglot knows (no file readers, no engine-specific escapes); anything
else is refused. Arguments are literals or `$n` parameters (bound before the query runs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlglot import exp

from pgerrors import FeatureNotAllowed, InvalidParameterValue

Metric = Literal["dau", "mau"]
Function = Literal["dau", "mau", "dau_by", "mau_by"]
RELEASED = "released"

_SEGMENT = ("segment", "text")

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "dau": (
        ("day", "date"),
        ("dau", "bigint"),
        ("dau_ci_low", "bigint"),
        ("dau_ci_high", "bigint"),
        ("epsilon", "double"),
        ("delta", "double"),
        ("reserved", "boolean"),
        ("status", "text"),
    ),
    "mau": (
        ("day", "date"),
        ("window_days", "integer"),
        ("mau", "bigint"),
        ("mau_ci_low", "bigint"),
        ("mau_ci_high", "bigint"),
        ("epsilon", "double"),
        ("delta", "double"),
        ("reserved", "boolean"),
        ("status", "text"),
    ),
}
COLUMNS["dau_by"] = (COLUMNS["dau"][0], _SEGMENT, *COLUMNS["dau"][1:])
COLUMNS["mau_by"] = (*COLUMNS["mau"][:2], _SEGMENT, *COLUMNS["mau"][2:])


@dataclass(frozen=True)
class ActivityCall:
    function: Function
    arguments: tuple[exp.Expression, ...]  # as written: literals, casts or parameters
    post: exp.Query  # the query with the call replaced by the `released` table
    end_exclusive: bool = False  # the last argument is a moment the range stops before (BI: ts < $2)
    text_parameters: bool = False  # parameters are typed text and read as moments (BI ranges)
    window_from_range: bool = False  # mau over (dataset, first, last): one window covering the range

    @property
    def metric(self) -> Metric:
        return "dau" if self.function.startswith("dau") else "mau"

    @property
    def by_segment(self) -> bool:
        return self.function.endswith("_by")

    def parameter_types(self) -> tuple[str, ...]:
        """Types of the `$n` parameters, by where they stand in the call."""
        kinds = ["text"] * len(self.arguments) if self.text_parameters else self._kinds()
        found: dict[int, str] = {}
        for argument, kind in zip(self.arguments, kinds, strict=False):
            parameter = argument if isinstance(argument, exp.Parameter) else argument.find(exp.Parameter)
            if parameter is not None:
                found[int(parameter.name)] = kind
        return tuple(found.get(i, "text") for i in range(1, max(found, default=0) + 1))

    def _kinds(self) -> list[str]:
        n = len(self.arguments) - self.by_segment
        if self.metric == "dau":
            kinds = ["text", "date", "date"][:n]
        else:
            kinds = ["text", "date", "integer"] if n == 3 else ["text", "date", "date", "integer"][:n]
        return [kinds[0], "text", *kinds[1:]] if self.by_segment else kinds

    def segment(self, params: list[Any]) -> str | None:
        """The segment column a `_by` call names (None for the totals)."""
        return str(_value(self.arguments[1], params)).lower() if self.by_segment else None

    def bind(self, params: list[Any]) -> tuple[str, dt.date, dt.date, int | None]:
        """(dataset, first day, last day, window days) with parameters filled in."""
        values = [_value(a, params) for a in self.arguments]
        if self.by_segment:
            values = values[:1] + values[2:]
        by = ", '<segment column>'" if self.by_segment else ""
        usage = (
            f"privacylens.{self.function}('<dataset>'{by}, DATE 'YYYY-MM-DD' [, DATE 'YYYY-MM-DD'])"
            if self.metric == "dau"
            else f"privacylens.{self.function}('<dataset>'{by}, DATE 'end' [, DATE 'last end'], window_days)"
        )
        if self.window_from_range:
            first, last = day_of(values[1]), day_of(values[2], self.end_exclusive)
            if last < first:
                raise InvalidParameterValue(f"the range ends ({last}) before it starts ({first})")
            return str(values[0]), last, last, (last - first).days + 1
        if self.by_segment and len(self.arguments) < 2:
            raise FeatureNotAllowed(f"{self.function}() takes other arguments", hint=f"Call {usage}")
        try:
            if self.metric == "dau" and len(values) in (2, 3):
                first = day_of(values[1])
                last = day_of(values[-1], self.end_exclusive) if len(values) == 3 else first
                return str(values[0]), first, last, None
            if self.metric == "mau" and len(values) in (3, 4):
                first = day_of(values[1])
                last = day_of(values[2]) if len(values) == 4 else first
                return str(values[0]), first, last, int(values[-1])
        except (TypeError, ValueError) as err:
            raise InvalidParameterValue(f"{self.metric}(): {err}", hint=f"Call {usage}") from None
        raise FeatureNotAllowed(f"{self.metric}() takes other arguments", hint=f"Call {usage}")


def activity_call(tree: exp.Expression | None) -> ActivityCall | None:
    """The DAU/MAU call of a query, or None if it calls neither; refuses a query that does more."""
    if not isinstance(tree, exp.Query):
        return None
    calls = [
        t
        for t in tree.find_all(exp.Table)
        if t.db.lower() == "privacylens"
        and isinstance(t.this, exp.Anonymous)
        and t.this.name.lower() in COLUMNS
    ]
    if not calls:
        return None
    tables = list(tree.find_all(exp.Table))
    if len(calls) != 1 or len(tables) != 1:
        raise FeatureNotAllowed(
            "a DAU or MAU query reads one privacylens.dau(...) or privacylens.mau(...) call and nothing else",
            hint="Post-process the released rows in one query: "
            "SELECT day, dau FROM privacylens.dau(...) ORDER BY day",
        )
    call = calls[0]
    function: Function = call.this.name.lower()  # type: ignore[assignment]
    metric = "dau" if function.startswith("dau") else "mau"
    arguments = tuple(call.this.expressions)
    for node in tree.walk():
        if isinstance(node, exp.Anonymous) and node is not call.this:
            raise FeatureNotAllowed(
                f"function {node.name}() is not allowed around a {metric.upper()} release",
                hint="Use ordinary SQL functions (arithmetic, ROUND, date_trunc, CASE) on the released "
                "columns.",
            )
    for node in tree.walk():
        if isinstance(node, exp.Parameter) and not any(node in a.walk() for a in arguments):
            raise FeatureNotAllowed(
                "parameters are allowed only as arguments of privacylens.dau(...) / mau(...)",
                hint="Write other values as literals.",
            )
    post = tree.copy()
    for table in post.find_all(exp.Table):
        alias = table.alias
        table.replace(exp.to_table(RELEASED).as_(alias) if alias else exp.to_table(RELEASED))
    return ActivityCall(function, arguments, post)


def _value(argument: exp.Expression, params: list[Any]) -> Any:
    node = argument.this if isinstance(argument, exp.Cast) else argument
    if isinstance(node, exp.Parameter):
        index = int(node.name) - 1
        if not 0 <= index < len(params):
            raise InvalidParameterValue(f"parameter ${index + 1} is not bound")
        return params[index]
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else int(node.this) if node.is_int else float(node.this)
    raise FeatureNotAllowed(
        "the arguments of privacylens.dau(...) and mau(...) must be literals or parameters",
        hint="e.g. privacylens.dau('activity', DATE '2025-10-01')",
    )


def day_of(value: Any, before: bool = False) -> dt.date:
    """The UTC day of a date, timestamp or their text; with `before`, the last day a range that
    stops before this moment covers (the day before, at midnight)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        return value - dt.timedelta(days=1) if before else value
    else:
        moment = moment_of(str(value))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if before and moment.time() == dt.time():
        return moment.date() - dt.timedelta(days=1)
    return moment.date()


def moment_of(text: str) -> dt.datetime:
    """A timestamp as SQL text writes it ('2025-10-01', '2025-10-01 08:00:00+00', '...Z')."""
    text = text.strip().replace("Z", "+00:00")
    for short in (" +00", "+00"):
        if text.endswith(short):
            text = text[: -len(short)] + "+00:00"
            break
    return dt.datetime.fromisoformat(text)
