"""What a statement gives back to the connection: result rows, or the description of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rewriter.plan import Plan
from rewriter.types import PgType, pg_type_of_duckdb

Column = tuple[str, str]  # (name, PostgreSQL type name)


@dataclass
class Result:
    columns: list[Column] | None  # None: the statement returns no rows (SET, BEGIN, ...)
    rows: list[tuple]
    tag: str
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Description:
    parameter_types: tuple[PgType, ...]
    columns: list[Column] | None


def plan_columns(plan: Plan) -> list[Column]:
    return [(c.name, c.pg_type) for c in plan.columns]


def duckdb_columns(described: Sequence[tuple[str, str]]) -> list[Column]:
    return [(name, pg_type_of_duckdb(duckdb_type)) for name, duckdb_type in described]
