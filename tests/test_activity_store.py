"""The activity event store (stores/activity.py) on SQLite and a real PostgreSQL: batches all or
nothing, raw ids never stored, erasures purge earlier events only, windows across an epoch
boundary count a person once. Truth here is computed by plain Python over the same rows."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

import pytest

from stores.activity import ActivityStore, BadEvent, Event, parse_events


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(day) + dt.timedelta(hours=hour)


def test_a_bad_row_stores_nothing_of_its_batch(store_location: str) -> None:
    store = ActivityStore(store_location)
    text = "user_id,ts,op\nu1,2025-10-01T08:00:00Z,+\nu2,yesterday,+\nu3,2025-10-01T09:00:00Z,+\n"
    with pytest.raises(BadEvent, match="line 3: ts 'yesterday'"):
        store.ingest("activity", parse_events(text, "csv"))
    with pytest.raises(BadEvent, match="line 2: op must be"):
        parse_events("u1\t2025-10-01 08:00\t+\nu2\t2025-10-01 08:00\t*\n", "text")
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 1)) == 0
    store.ingest("activity", parse_events(text.replace("yesterday", "2025-10-01T10:00:00Z"), "csv"))
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 1)) == 3
    store.close()


def test_raw_ids_never_reach_the_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    store = ActivityStore(str(path))
    store.ingest("activity", [Event("alice@example.com", at("2025-10-03"), "+")])
    store.close()
    assert b"alice@example.com" not in path.read_bytes()
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT pseudonym FROM activity_events LIMIT 1").fetchone()
    assert len(stored) == 64 and "alice" not in stored


def test_counts_erasures_and_windows_match_an_independent_count(store_location: str) -> None:
    """Two months of a seeded stream with returning users and erasures: every DAU and every 30-day
    window equals a direct count over the raw events (an erasure deletes the user's earlier events;
    a later event counts again)."""
    rng = random.Random(11)  # the workload, not noise
    events = []
    for day in range(61):
        date = dt.date(2025, 9, 1) + dt.timedelta(days=day)
        for user in rng.sample(range(400), 60):
            events.append(
                Event(f"user-{user}", dt.datetime(date.year, date.month, date.day, rng.randrange(24)), "+")
            )
        if day % 7 == 3:
            events.append(
                Event(f"user-{rng.randrange(400)}", dt.datetime(date.year, date.month, date.day, 23, 59), "-")
            )
    events.sort(key=lambda e: e.ts)
    store = ActivityStore(store_location)
    for start in range(0, len(events), 500):  # several batches, as several COPYs
        store.ingest("activity", events[start : start + 500])
    surviving: list[Event] = []
    for event in events:
        if event.op == "-":
            surviving = [e for e in surviving if not (e.user_id == event.user_id and e.ts <= event.ts)]
        else:
            surviving.append(event)

    def truth(first: dt.date, last: dt.date) -> int:
        return len({e.user_id for e in surviving if first <= e.ts.date() <= last})

    for day in (dt.date(2025, 9, 1), dt.date(2025, 9, 30), dt.date(2025, 10, 1), dt.date(2025, 10, 31)):
        assert store.distinct_users("activity", day, day) == truth(day, day)
    for end in (dt.date(2025, 10, 1), dt.date(2025, 10, 15), dt.date(2025, 10, 31)):  # across the epoch edge
        first = end - dt.timedelta(days=29)
        assert store.distinct_users("activity", first, end) == truth(first, end), end
    store.close()
