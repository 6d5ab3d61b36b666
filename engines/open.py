"""Open the engines a policy's datasets live on: one per kind and location, shared by its datasets."""

from __future__ import annotations

from engines.base import Engine, Engines
from rewriter.policy import Policy


def open_engines(policy: Policy, bounding_secret: str, duckdb_memory_limit: str | None = None) -> Engines:
    by_dataset: dict[str, Engine] = {}
    on_duckdb = [n for n, d in policy.datasets.items() if d.engine == "duckdb"]
    if on_duckdb:
        from engines.duckdb_engine import DuckDBEngine

        duck = DuckDBEngine(policy, bounding_secret, on_duckdb, memory_limit=duckdb_memory_limit)
        by_dataset.update(dict.fromkeys(on_duckdb, duck))
    placed: dict[tuple[str, str], Engine] = {}
    try:
        for name, dataset in sorted(policy.datasets.items()):
            if dataset.engine == "postgres":
                from engines.postgres_engine import PostgresEngine

                assert dataset.dsn is not None
                key = ("postgres", dataset.dsn)
                if key not in placed:
                    placed[key] = PostgresEngine(policy, bounding_secret, dataset.dsn)
                placed[key].add(name)  # type: ignore[attr-defined]
            elif dataset.engine == "spark":
                from engines.spark_engine import SparkEngine

                assert dataset.master is not None
                key = ("spark", dataset.master)
                if key not in placed:
                    placed[key] = SparkEngine(policy, bounding_secret, dataset.master)
                placed[key].add(name)  # type: ignore[attr-defined]
            else:
                continue
            by_dataset[name] = placed[key]
    except BaseException:
        Engines(by_dataset).close()
        raise
    return Engines(by_dataset)
