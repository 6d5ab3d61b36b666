"""The in-memory DuckDB the activity store checks, pseudonymises and counts in, and its shared SQL.

Raw user ids pass through it at ingestion, so it may never spill to disk; counts read the stored
Parquet segments (`EVENTS`, with `$files` bound) and leave out what an erasure covers (`NOT_ERASED`,
with the erasures registered as the table `erased`: `erased_frame`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np

# The events of an epoch: older segments may lack a segment column added to the policy since.
EVENTS = "read_parquet($files, union_by_name = true)"

# An event is counted unless an erasure of the same pseudonym at or after its time covers it.
NOT_ERASED = "NOT EXISTS (SELECT 1 FROM erased x WHERE x.pseudonym = e.pseudonym AND e.ts <= x.ts)"


def duck() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never spills (raw ids must not reach a file), in UTC."""
    con = duckdb.connect(config={"temp_directory": "", "threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    return con


def erased_frame(names: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """(pseudonym hex, ts) pairs as the columns of the `erased` table."""
    return {
        "pseudonym": np.array([bytes.fromhex(p) for p, _ in names], dtype=object),
        "ts": np.array([dt.datetime.fromisoformat(ts) for _, ts in names], dtype="datetime64[us]"),
    }


def quoted(path: Path) -> str:
    """A path inside a single-quoted SQL string."""
    return str(path).replace("'", "''")


def path_list(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{quoted(Path(p))}'" for p in paths) + "]"
