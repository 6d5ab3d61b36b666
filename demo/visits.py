"""A seeded synthetic `visits` table: many rows per user, so contribution bounding matters.

About 5,000 users with 1 to 60 visits each (a few heavy users), over four channels. Made-up demo
data from a seeded `random.Random`; privacy noise only ever comes from `privacy.mechanisms`.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from demo.parquet import write_parquet

CHANNELS = {"web": 0.5, "app": 0.3, "email": 0.15, "store": 0.05}


def generate(out: Path, seed: int = 7, users: int = 5000) -> int:
    rng = random.Random(seed)
    start = dt.date(2023, 1, 1)
    rows = []
    for user in range(1, users + 1):
        heavy = rng.random() < 0.02
        visits = rng.randint(20, 60) if heavy else rng.randint(1, 12)
        favourite = rng.choices(list(CHANNELS), weights=list(CHANNELS.values()))[0]
        for _ in range(visits):
            channel = (
                favourite
                if rng.random() < 0.7
                else rng.choices(list(CHANNELS), weights=list(CHANNELS.values()))[0]
            )
            day = start + dt.timedelta(days=rng.randint(0, 729))
            minutes = round(min(rng.expovariate(1 / 9), 300), 1)
            pages = max(1, int(rng.gauss(6, 4)))
            rows.append((user, day, channel, minutes, pages))
    rng.shuffle(rows)
    return write_parquet(
        rows,
        {
            "user_id": "BIGINT",
            "visit_date": "DATE",
            "channel": "VARCHAR",
            "minutes": "DOUBLE",
            "pages": "INTEGER",
        },
        out,
    )
