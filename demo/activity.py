"""Seeded synthetic activity events: returning users, a few erasures, some who come back after.

Each user has a propensity to be active on a day (most rarely, some almost daily), one to three
events on an active day at random times, and with probability `erasure_rate` an erasure request on
a random day; a fifth of the erased come back later. With `platforms`, each event also carries the
platform it came from (a user's usual one, sometimes another), drawn from a second seeded stream so
the events themselves do not change. The workload is seeded (`random.Random`): it is data, not
noise.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

DEMO_END = dt.date(2025, 10, 31)
PLATFORMS = ("ios", "android", "web")


def events(
    days: int,
    users: int,
    end: dt.date = DEMO_END,
    erasure_rate: float = 0.02,
    seed: int = 7,
    platforms: bool = False,
) -> Iterator[tuple[str, ...]]:
    """(user_id, ts, op) rows in time order, over the `days` days ending on `end`; with
    `platforms`, (user_id, ts, op, platform), the platform empty on erasures."""
    rng = random.Random(seed)
    where = random.Random(seed + 1)
    usual = [where.choice(PLATFORMS) for _ in range(users)]
    first = end - dt.timedelta(days=days - 1)
    propensity = [min(0.95, rng.betavariate(0.6, 2.2)) for _ in range(users)]
    erased_on = {u: rng.randrange(days) for u in range(users) if rng.random() < erasure_rate}
    returns = {u for u in erased_on if rng.random() < 0.2}
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        rows = []
        for user in range(users):
            gone = user in erased_on and erased_on[user] < offset and user not in returns
            if gone or rng.random() >= propensity[user]:
                continue
            for _ in range(rng.randint(1, 3)):
                moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86_000))
                rows.append((moment, f"user-{user:06d}", "+"))
        for user, when in erased_on.items():
            if when == offset:
                rows.append((dt.datetime.combine(day, dt.time(23, 59, 59)), f"user-{user:06d}", "-"))
        for moment, user, op in sorted(rows):
            row = (user, moment.strftime("%Y-%m-%d %H:%M:%S+00"), op)
            if not platforms:
                yield row
                continue
            home = usual[int(user.rsplit("-", 1)[1])]
            yield (*row, "" if op == "-" else home if where.random() < 0.85 else where.choice(PLATFORMS))
