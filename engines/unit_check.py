"""Which datasets' data was seen to hold one row per privacy unit, and at which data version.

A policy's `one_row_per_unit: true` lets plans skip contribution bounding, so it is trusted only
once the data shows it, and only for the data that was checked: when a question sees a new data
version, the dataset loses the status (its plans bound contribution again, always safe) until a
check of the new data passes. Every engine keeps its datasets' status here; it supplies how to
count repeated units and how to read a data version.

>>> versions = {"t": "v1"}
>>> units = UniqueUnits(lambda name: 0, versions.__getitem__)
>>> units.declare("t"); units.check("t"); units.datasets
frozenset({'t'})
>>> versions["t"] = "v2"; units.seen("t", "v2", size_bytes=10); units.datasets
frozenset({'t'})
>>> repeated = UniqueUnits(lambda name: 3, versions.__getitem__)
>>> repeated.declare("t"); repeated.check("t"); repeated.datasets
frozenset()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlglot import exp

log = logging.getLogger(__name__)
CHECK_BEFORE_SERVING_BYTES = 32 << 20  # smaller data is checked before serving (well under a second)


class UniqueUnits:
    def __init__(self, repeated_units: Callable[[str], int], version: Callable[[str], str]) -> None:
        self._repeated_units = repeated_units  # how many units have more than one row
        self._version = version
        self._declared: set[str] = set()
        self._verified: dict[str, str] = {}  # dataset -> the data version that was checked
        self._checking: set[str] = set()
        self._lock = threading.Lock()

    def declare(self, dataset: str) -> None:
        with self._lock:
            self._declared.add(dataset)

    def watch(self, dataset: str, size_bytes: int | None) -> None:
        """Declare a dataset and check it: before serving when its data is small, else in the
        background (until then its queries get contribution-bounded plans, always safe), so start-up
        does not grow with the data."""
        self.declare(dataset)
        if size_bytes is not None and size_bytes <= CHECK_BEFORE_SERVING_BYTES:
            self.check(dataset)
        else:
            self.check_later(dataset)

    @property
    def datasets(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._verified)

    def check(self, dataset: str) -> None:
        """Count repeated units now; the dataset is unique at the version read before counting, if
        the data did not change while it was counted."""
        with self._lock:
            if dataset not in self._declared or dataset in self._checking:
                return
            self._checking.add(dataset)
        try:
            before = self._version(dataset)
            repeated = self._repeated_units(dataset)
            unchanged = self._version(dataset) == before
        except Exception:
            log.exception("dataset %s: could not check one_row_per_unit", dataset)
            return
        finally:
            with self._lock:
                self._checking.discard(dataset)
        if repeated:
            log.warning(
                "dataset %s declares one_row_per_unit but %d privacy units have several rows: "
                "its queries bound each unit's contribution in the plan", dataset, repeated,
            )  # fmt: skip
        elif unchanged:
            with self._lock:
                self._verified[dataset] = before

    def check_later(self, dataset: str) -> None:
        threading.Thread(target=self.check, args=(dataset,), daemon=True, name=f"check {dataset}").start()

    def seen(self, dataset: str, version: str, size_bytes: int | None = None) -> None:
        """A question saw this data version: a dataset checked at another version loses its status
        until the new data is checked: at once when it is small (the caller runs off the event
        loop), else in the background."""
        with self._lock:
            if dataset not in self._declared or self._verified.get(dataset) == version:
                return
            self._verified.pop(dataset, None)
        if size_bytes is not None and size_bytes <= CHECK_BEFORE_SERVING_BYTES:
            self.check(dataset)
        else:
            self.check_later(dataset)


def repeated_units_sql(table: exp.Table, unit: str, dialect: str) -> str:
    """The count of privacy units with more than one row in `table`, in an engine's dialect.

    >>> repeated_units_sql(exp.to_table("t"), "u", "spark")[:75]
    'SELECT COUNT(*) FROM (SELECT `u` FROM t WHERE NOT `u` IS NULL GROUP BY `u` '
    """
    column = exp.column(unit, quoted=True)
    repeated = (
        exp.select(column.copy())
        .from_(table.copy())
        .where(exp.Not(this=exp.Is(this=column.copy(), expression=exp.Null())))
        .group_by(column.copy())
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
    )
    return exp.select(exp.Count(this=exp.Star())).from_(repeated.subquery("__repeated")).sql(dialect)
