"""Open the engines a policy's datasets live on: one per kind and location, shared by its datasets."""

from __future__ import annotations

from typing import Protocol

from engines.base import Engine, Engines
from rewriter.policy import Policy


class _Placing(Engine, Protocol):
    def add(self, dataset: str) -> None: ...


def open_engines(policy: Policy, bounding_secret: str, duckdb_memory_limit: str | None = None) -> Engines:
    by_dataset: dict[str, Engine] = {}
    placed: dict[tuple[str, str], _Placing] = {}  # (kind, dsn or master) -> its engine
    try:
        on_duckdb = [n for n, d in policy.datasets.items() if d.engine == "duckdb"]
        if on_duckdb:
            from engines.duckdb_engine import DuckDBEngine

            duck = DuckDBEngine(policy, bounding_secret, on_duckdb, memory_limit=duckdb_memory_limit)
            by_dataset.update(dict.fromkeys(on_duckdb, duck))
        for name, dataset in sorted(policy.datasets.items()):
            if dataset.engine == "duckdb":
                continue
            location = dataset.dsn if dataset.engine == "postgres" else dataset.master
            assert location is not None  # the policy schema requires it
            key = (dataset.engine, location)
            if key not in placed:
                placed[key] = _open(dataset.engine, policy, bounding_secret, location)
            placed[key].add(name)
            by_dataset[name] = placed[key]
    except BaseException:
        Engines({**by_dataset, **{f"{k}:{loc}": e for (k, loc), e in placed.items()}}).close()
        raise
    return Engines(by_dataset)


def _open(kind: str, policy: Policy, bounding_secret: str, location: str) -> _Placing:
    if kind == "postgres":
        from engines.postgres_engine import PostgresEngine

        return PostgresEngine(policy, bounding_secret, location)
    from engines.spark_engine import SparkEngine

    return SparkEngine(policy, bounding_secret, location)
