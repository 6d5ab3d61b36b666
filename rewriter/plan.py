"""The plan the rewriter hands to the proxy: clipped engine SQL plus everything needed to noise it.

A plan is computed without touching data, so the output schema it carries is what Describe reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from rewriter.types import PgType


@dataclass(frozen=True)
class GroupKey:
    output_index: int | None  # position in the select list, or None when grouped but not selected
    column: str
    pg_type: PgType
    values: tuple[str | int | bool | dt.datetime, ...]  # the public domain: every value is released
    key: str = ""  # the group expression's comparable form (rewriter.group_keys.key_of)


@dataclass(frozen=True)
class Measure:
    """One noisy quantity measured by the engine per group."""

    engine_column: str
    sensitivity: float  # L1 for Laplace, L2 for Gaussian, over the vector of all groups
    epsilon: float  # this measure's share of the query's ε (for Gaussian: an even share, shown only)
    discrete: bool  # integer-valued (a count)
    kind: Literal["laplace", "gaussian"] = "laplace"
    scale: float = 0.0  # b for Laplace (sensitivity / ε), σ for Gaussian (from the accountant)
    vector: str = ""  # measures sharing a name are one vector release (a histogram's bins)

    def __post_init__(self) -> None:
        if self.scale == 0.0:
            object.__setattr__(self, "scale", self.sensitivity / self.epsilon)


@dataclass(frozen=True)
class Aggregate:
    """A released aggregate: count (of rows or of units) and sum use one measure, avg two."""

    name: str
    function: Literal["count", "sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop", "quantile"]
    measures: tuple[Measure, ...]
    pg_type: PgType
    lower: float | None = None
    upper: float | None = None
    fraction: float | None = None  # quantiles: which one (0.5 for the median)

    @property
    def midpoint(self) -> float:
        assert self.lower is not None and self.upper is not None
        return (self.lower + self.upper) / 2

    @property
    def epsilon(self) -> float:
        return sum(m.epsilon for m in self.measures)


@dataclass(frozen=True)
class OutputColumn:
    name: str
    pg_type: PgType
    role: Literal["key", "value", "ci_low", "ci_high", "pending", "suppressed"]
    index: int = -1  # the key's or aggregate's index


@dataclass(frozen=True)
class SortKey:
    output: int  # index into Plan.columns
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Plan:
    dataset: str
    engine_sql: str  # the engine query in DuckDB's dialect (golden files, fingerprint)
    engine_query: Any  # the engine query as a sqlglot tree: each engine renders it in its dialect
    parameter_types: tuple[PgType, ...]
    keys: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    threshold: Measure  # the noisy group size
    min_group_size: int
    epsilon: float  # the query's ε as asked
    cost: Fraction  # pure ε: exactly what is charged; every measure's ε is at most its exact share of it
    confidence: float
    columns: tuple[OutputColumn, ...]
    order_by: tuple[SortKey, ...]
    limit: int | None
    fingerprint: str
    having: Any = None  # rewriter.having.Condition over output columns, evaluated after noise
    delta: float = 0.0  # the query's δ (0 for pure ε)
    events: tuple[Any, ...] = ()  # privacy.accounting.NoiseEvent per measure, for (ε, δ) datasets
    question: Any = None  # rewriter.question.Question: what is asked, for the attack detectors
    # rewriter.rules.bucket_time_range.Bucketing: a time-bucketed question, released bucket by bucket
    bucketing: Any = None
    # Facts derived from the plan once, by name (answers.answer's question template); never copied
    # by dataclasses.replace.
    memo: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def engine_parameters(
        self, params: Sequence[Any], start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> list[Any]:
        """What the engine binds: the client's parameters, then a bucketed question's range (its
        whole buckets, or [start, end) of them)."""
        if self.bucketing is None:
            return list(params)
        low = self.bucketing.start if start is None else start
        high = self.bucketing.end if end is None else end
        return [*params, *self.bucketing.bound(low, high)]

    @property
    def bucket_key(self) -> int | None:
        """Which of `keys` is the time bucket of a bucketed question."""
        if self.bucketing is None:
            return None
        return next(i for i, key in enumerate(self.keys) if key.key == self.bucketing.key)
