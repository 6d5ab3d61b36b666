"""The one small interface every engine has, and the router from a dataset to its engine.

An engine runs the plan's engine query (a sqlglot tree the rewriter built) rendered in its own SQL
dialect, interruptibly, and returns the exact aggregates: column names and rows. It never sees the
client's text and never returns anything but aggregates. Engine errors never reach clients as
engine text (it could quote data): they become InternalError, the detail goes to the log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from engines.running import Limits, RunningQuery
from engines.unit_check import UniqueUnits
from pgerrors import DatatypeMismatch
from rewriter.plan import Plan

Rows = tuple[list[str], list[tuple]]


class EngineUnavailable(ValueError):
    """An engine cannot be opened: unreachable, a declared table missing, or not built."""


class Engine(Protocol):
    dialect: str  # sqlglot's name for the engine's SQL
    unique_units: frozenset[str]  # datasets verified to have one row per privacy unit

    def render(self, plan: Plan) -> str:
        """The SQL this engine runs for the plan (EXPLAIN shows it)."""
        ...

    def data_version(self, dataset: str) -> str:
        """Changes whenever the dataset's data may have changed: cached answers never outlive it."""
        ...

    def bucket_versions(
        self, dataset: str, column: str, spans: Sequence[tuple[dt.datetime, dt.datetime]], version: str
    ) -> list[str]:
        """For each time span [start, end): changes whenever the rows of `column` in it may have
        changed (the stored releases of a time bucket never outlive it). Engines that cannot tell
        return `version`, the dataset's data version just read, for every span."""
        ...

    async def check(self, plan: Plan, params: Sequence[Any]) -> None:
        """Refuse (DatatypeMismatch) parameters the engine cannot bind into the plan, by planning it
        without reading data: a failure that depends only on the statement, found before the charge."""
        ...

    async def run(self, plan: Plan, params: Sequence[Any], running: RunningQuery, limits: Limits) -> Rows: ...

    def close(self) -> None: ...


class VersionedData:
    """What engines share about data versions: `data_version` is the engine's `_version`, and a new
    version sends the dataset back to its one-row-per-unit check (`_units`); an engine that cannot
    tell time buckets apart gives every bucket the dataset's version."""

    _units: UniqueUnits

    def _version(self, dataset: str) -> str:
        raise NotImplementedError

    def _size(self, dataset: str) -> int | None:
        """Bytes of the dataset's data, when cheap to know: small data is re-checked at once."""
        return None

    def data_version(self, dataset: str) -> str:
        version = self._version(dataset)
        self._units.seen(dataset, version, self._size(dataset))  # new data is checked before trusted
        return version

    def bucket_versions(
        self, dataset: str, column: str, spans: Sequence[tuple[dt.datetime, dt.datetime]], version: str
    ) -> list[str]:
        return [version] * len(spans)  # any change makes every bucket fresh


class Engines:
    """Each dataset's engine, as the policy places it."""

    def __init__(self, by_dataset: Mapping[str, Engine]) -> None:
        self._by_dataset = dict(by_dataset)

    def of(self, dataset: str) -> Engine:
        return self._by_dataset[dataset]

    @property
    def unique_units(self) -> frozenset[str]:
        return frozenset().union(*(e.unique_units for e in self.distinct()))

    def distinct(self) -> list[Engine]:
        seen: dict[int, Engine] = {}
        for engine in self._by_dataset.values():
            seen.setdefault(id(engine), engine)
        return list(seen.values())

    def close(self) -> None:
        for engine in self.distinct():
            engine.close()


def parameter_mismatch() -> DatatypeMismatch:
    """The refusal of a parameter the engine cannot bind (the engine's words are not echoed)."""
    return DatatypeMismatch(
        "a parameter of this query does not fit where it is used (its type could not be inferred or "
        "converted); nothing was charged",
        hint="Cast the parameter to the column's type, e.g. WHERE age > $1::integer (not -$1 on text).",
    )
