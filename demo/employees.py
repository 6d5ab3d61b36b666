"""A seeded synthetic `employees` table (~15,000 rows), written to Parquet with DuckDB.

The values come from a seeded `random.Random`: this is made-up demo data, not privacy noise (noise
only ever comes from `privacy.mechanisms`). Department sizes differ a lot on purpose, and "Board"
has fewer members than the demo policy's minimum group size, so it comes back suppressed.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from demo.parquet import write_parquet

# department: (head count, median salary)
DEPARTMENTS: dict[str, tuple[int, int]] = {
    "Engineering": (4200, 98_000),
    "Sales": (3100, 64_000),
    "Operations": (2600, 52_000),
    "Support": (1900, 41_000),
    "Marketing": (1200, 67_000),
    "Finance": (800, 78_000),
    "Human Resources": (500, 58_000),
    "Legal": (300, 112_000),
    "Research": (150, 105_000),
    "Board": (3, 240_000),
}


def generate(out: Path, seed: int = 20261122, scale: float = 1.0) -> int:
    """Write the table; `scale` multiplies every department's head count (benchmarks use ~68 for 1M rows)."""
    rng = random.Random(seed)
    rows = []
    user_id = 100_000
    start = dt.date(2005, 1, 1)
    for department, (count, median) in DEPARTMENTS.items():
        for _ in range(round(count * scale)):
            user_id += rng.randint(1, 7)
            salary = round(median * rng.lognormvariate(0, 0.35), 2)
            age = min(70, max(18, int(rng.gauss(41, 10))))
            hire = start + dt.timedelta(days=rng.randint(0, 7600))
            rows.append((user_id, department, salary, age, hire))
    rng.shuffle(rows)
    return write_parquet(
        rows,
        {
            "user_id": "BIGINT",
            "department": "VARCHAR",
            "salary": "DOUBLE",
            "age": "INTEGER",
            "hire_date": "DATE",
        },
        out,
    )
