"""The activity event store (stores/activity.py) with its ledger on SQLite and a real PostgreSQL:
batches all or nothing, raw ids never stored, erasures remove earlier events only (late ones too),
windows across an epoch boundary count a person once, restores replay erasures, retention shreds.
Truth here is computed by plain Python over the same rows."""

from __future__ import annotations

import datetime as dt
import hmac
import random
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest

from stores.activity import ActivityStore
from stores.activity_input import BadEvent, Batch, read_batch
from stores.pseudonyms import ShreddedKey

Row = tuple[str, str, str]


def rows_at(*rows: tuple[str, str, str]) -> Batch:
    return Batch.of_rows(list(rows))


def workload(seed: int = 11, users: int = 400) -> list[Row]:
    rng = random.Random(seed)  # the workload, not noise
    events: list[Row] = []
    for day in range(61):
        date = dt.date(2025, 9, 1) + dt.timedelta(days=day)
        for user in rng.sample(range(users), 60):
            events.append((f"user-{user}", f"{date} {rng.randrange(24):02d}:00:00", "+"))
        if day % 7 == 3:
            events.append((f"user-{rng.randrange(users)}", f"{date} 23:59:00", "-"))
    return events


def truth(events: list[Row], first: dt.date, last: dt.date) -> int:
    """Distinct users with an event in [first, last] that no erasure at or after it removed."""
    erased: dict[str, list[dt.datetime]] = {}
    for user, ts, op in events:
        if op == "-":
            erased.setdefault(user, []).append(dt.datetime.fromisoformat(ts))
    alive = set()
    for user, ts, op in events:
        moment = dt.datetime.fromisoformat(ts)
        if (
            op == "+"
            and first <= moment.date() <= last
            and not any(moment <= e for e in erased.get(user, []))
        ):
            alive.add(user)
    return len(alive)


def test_a_bad_row_stores_nothing_of_its_batch(store_location: str, tmp_path: Path) -> None:
    store = ActivityStore(store_location, tmp_path / "events")
    text = "user_id,ts,op\nu1,2025-10-01T08:00:00Z,+\nu2,yesterday,+\nu3,2025-10-01T09:00:00Z,+\n"
    with pytest.raises(BadEvent, match="line 3: ts 'yesterday' is not a date"):
        store.ingest("activity", read_batch(text, "csv", header=True))
    with pytest.raises(BadEvent, match="line 2: op must be"):
        store.ingest("activity", read_batch("u1\t2025-10-01 08:00\t+\nu2\t2025-10-01 08:00\t*\n", "text"))
    with pytest.raises(BadEvent, match="line 2: expected 3 values"):
        read_batch("u1\t2025-10-01\t+\nu2\t2025-10-01\n", "text")
    with pytest.raises(BadEvent, match="line 1: ts 2099-01-01 is in the future"):
        store.ingest("activity", read_batch("u1\t2099-01-01\t+\n", "text"))
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 1)) == 0
    assert not list((tmp_path / "events").rglob("*.parquet"))
    store.ingest(
        "activity", read_batch(text.replace("yesterday", "2025-10-01T10:00:00Z"), "csv", header=True)
    )
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 1)) == 3
    store.close()


def test_raw_ids_never_reach_a_file_and_pseudonyms_are_the_epoch_hmac(tmp_path: Path) -> None:
    ledger, folder = tmp_path / "ledger.sqlite", tmp_path / "events"
    store = ActivityStore(str(ledger), folder)
    store.ingest("activity", rows_at(("alice@example.com", "2025-10-03 12:00", "+")))
    store.erase("activity", "bob@example.com")
    key = store.keys.key("activity", dt.date(2025, 10, 3))
    files = store.segments.files("activity", "2025-10")
    store.close()
    for path in [ledger, *tmp_path.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert b"alice@example.com" not in data and b"bob@example.com" not in data, path
    (stored,) = duckdb.connect().execute(f"SELECT pseudonym FROM '{files[0]}'").fetchone()
    assert bytes(stored) == hmac.digest(key, b"alice@example.com", "sha256")
    # ids DuckDB could read as escapes or quotes are hashed as their UTF-8 text, like hmac.digest
    store = ActivityStore(str(ledger), folder)
    odd = ["\\x41", "o'brien", 'quote"d', "tab\there", "ünï 名前", "a" * 300]
    store.ingest("odd", Batch.of_rows([(u, "2025-10-04 09:00", "+") for u in odd]))
    key = store.keys.key("odd", dt.date(2025, 10, 4))
    paths = [str(f) for f in store.segments.files("odd", "2025-10")]
    rows = duckdb.connect().execute(f"SELECT pseudonym FROM read_parquet({paths})").fetchall()
    assert {bytes(r[0]) for r in rows} == {hmac.digest(key, u.encode(), "sha256") for u in odd}
    store.close()


def test_counts_with_erasures_and_windows_match_an_independent_count(
    store_location: str, tmp_path: Path
) -> None:
    """Two months of a seeded stream with returning users and erasures, in several batches: every DAU
    and every 30-day window equals a direct count, before and after the erased events are purged."""
    events = workload()
    store = ActivityStore(store_location, tmp_path / "events")
    for start in range(0, len(events), 500):  # several batches, as several COPYs
        store.ingest("activity", Batch.of_rows(events[start : start + 500]), now=dt.datetime(2025, 12, 1))
    days = (dt.date(2025, 9, 1), dt.date(2025, 9, 30), dt.date(2025, 10, 1), dt.date(2025, 10, 31))
    ends = (dt.date(2025, 10, 1), dt.date(2025, 10, 15), dt.date(2025, 10, 31))  # across the epoch edge

    def check() -> None:
        daily = store.daily_users("activity", dt.date(2025, 9, 1), dt.date(2025, 10, 31))
        for day in days:
            assert daily[day] == store.distinct_users("activity", day, day) == truth(events, day, day)
        for end in ends:
            first = end - dt.timedelta(days=29)
            assert store.distinct_users("activity", first, end) == truth(events, first, end), end

    check()
    assert store.pending_erasures("activity") > 0
    flushed = store.flush_deletes("activity")
    assert flushed.purged > 0 and store.pending_erasures("activity") == 0
    check()
    store.close()


def test_a_late_event_dated_before_an_erasure_is_erased_too(tmp_path: Path) -> None:
    store = ActivityStore(str(tmp_path / "l.sqlite"), tmp_path / "events")
    store.ingest("activity", rows_at(("u1", "2025-10-02 08:00", "+"), ("u2", "2025-10-02 09:00", "+")))
    store.erase("activity", "u1", dt.datetime(2025, 10, 5))
    store.ingest("activity", rows_at(("u1", "2025-10-03 08:00", "+")))  # arrives late
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 4)) == 1
    store.ingest("activity", rows_at(("u1", "2025-10-06 08:00", "+")))  # came back after the erasure
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 6)) == 2
    store.close()


def test_restoring_the_events_or_the_ledger_replays_erasures(tmp_path: Path) -> None:
    ledger, folder = tmp_path / "ledger.sqlite", tmp_path / "events"
    store = ActivityStore(str(ledger), folder)
    store.ingest("activity", rows_at(("u1", "2025-10-02 08:00", "+"), ("u2", "2025-10-02 09:00", "+")))
    shutil.copytree(folder, tmp_path / "events-backup")
    live, backup = sqlite3.connect(ledger), sqlite3.connect(tmp_path / "ledger-backup.sqlite")
    live.backup(backup)  # an online backup (the live file alone lacks its write-ahead log)
    live.close()
    backup.close()
    store.erase("activity", "u1", dt.datetime(2025, 10, 5))
    store.flush_deletes("activity")
    store.close()

    # the event folder comes back from before the erasure: its old segment holds u1 again
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "events-backup", folder)
    store = ActivityStore(str(ledger), folder)
    report = store.recover("activity")
    assert report["adopted"] == 1 and report["purged"] == 1
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 3)) == 1
    store.close()

    # the ledger comes back from before the erasure: the journal in the event folder still has it
    for stale in (Path(f"{ledger}-wal"), Path(f"{ledger}-shm")):
        stale.unlink(missing_ok=True)
    shutil.copy(tmp_path / "ledger-backup.sqlite", ledger)
    store = ActivityStore(str(ledger), folder)
    report = store.recover("activity")
    assert report["erasures_replayed"] == 1
    assert store.distinct_users("activity", dt.date(2025, 10, 1), dt.date(2025, 10, 3)) == 1
    files = [str(f) for f in store.segments.files("activity", "2025-10")]
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({files})").fetchone() == (1,)
    store.close()


def test_a_crash_after_the_commit_is_rolled_forward_and_before_it_leaves_nothing(tmp_path: Path) -> None:
    ledger, folder = tmp_path / "ledger.sqlite", tmp_path / "events"
    store = ActivityStore(str(ledger), folder)

    def crash(staged: object) -> None:
        raise SystemExit("killed between the commit and the renames")

    store.segments.publish = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        store.ingest("activity", rows_at(("u1", "2025-10-02 08:00", "+")))
    store.close()
    (temporary,) = folder.rglob(".tmp-*")
    (temporary.parent / ".tmp-never-committed.parquet").write_bytes(temporary.read_bytes())
    store = ActivityStore(str(ledger), folder)
    report = store.recover("activity")
    assert report["rolled_forward"] == 1 and report["discarded"] == 1
    assert store.distinct_users("activity", dt.date(2025, 10, 2), dt.date(2025, 10, 2)) == 1
    assert not list(folder.rglob(".tmp-*"))
    store.close()


def test_retention_deletes_old_months_events_and_keys(tmp_path: Path) -> None:
    store = ActivityStore(str(tmp_path / "l.sqlite"), tmp_path / "events")
    store.ingest("activity", rows_at(("u1", "2025-08-02 08:00", "+"), ("u2", "2025-10-02 09:00", "+")))
    assert store.expire("activity", retention_days=60, today=dt.date(2025, 11, 1)) == ["2025-08"]
    assert not (tmp_path / "events" / "activity" / "2025-08").exists() or not list(
        (tmp_path / "events" / "activity" / "2025-08").glob("*.parquet")
    )
    with pytest.raises(ShreddedKey):  # a count in a shredded epoch is refused, not a silent 0
        store.distinct_users("activity", dt.date(2025, 8, 1), dt.date(2025, 8, 31))
    with pytest.raises(BadEvent, match="past the dataset's retention"):
        store.ingest("activity", rows_at(("u3", "2025-08-05 08:00", "+")))
    assert store.distinct_users("activity", dt.date(2025, 10, 2), dt.date(2025, 10, 2)) == 1
    store.close()


def test_key_rotations_inside_windows_count_each_person_once(store_location: str, tmp_path: Path) -> None:
    """Four months ingested day by day, with a rotation decided at once (its overlap), one scheduled
    ahead and one on a month's first day: every DAU, 7- and 30-day window equals a direct count,
    so a person active on both sides of a rotation is counted once."""
    rng = random.Random(5)  # the workload, not noise
    store = ActivityStore(store_location, tmp_path / "events")
    rotations = {  # decided at the end of this day -> effective
        dt.date(2025, 10, 10): dt.date(2025, 10, 12),
        dt.date(2025, 10, 25): dt.date(2025, 11, 20),
        dt.date(2025, 11, 29): dt.date(2025, 12, 1),
    }
    events: list[Row] = []
    day = dt.date(2025, 9, 1)
    while day <= dt.date(2025, 12, 31):
        batch = [(f"u{u}", f"{day} {rng.randrange(24):02d}:30:00", "+") for u in rng.sample(range(150), 25)]
        if day.day in (8, 18):
            batch.append(("both-sides", f"{day} 12:00:00", "+"))
        events += batch
        evening = dt.datetime.combine(day, dt.time(23, 59))
        store.ingest("activity", Batch.of_rows(batch), now=evening)
        if day in rotations:
            made = store.rotate("activity", rotations[day], 30, "test", now=evening)
            assert made.effective == rotations[day]
        day += dt.timedelta(days=1)
    first, last = dt.date(2025, 9, 1), dt.date(2025, 12, 31)
    daily = store.daily_users("activity", first, last)
    ends = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    for window in (7, 30):
        counted = store.window_users("activity", ends, window)
        for end in ends:
            start = max(first, end - dt.timedelta(days=window - 1))
            assert counted[end] == truth(events, start, end), (window, end)
    assert all(daily[d] == truth(events, d, d) for d in ends)
    epochs = set(store.segments.epochs("activity"))
    assert {"2025-10", "2025-10-12", "2025-11-20", "2025-12-01"} <= epochs
    old, new = (store.keys.key("activity", dt.date(2025, 10, d)) for d in (11, 12))
    assert old != new
    before = store.window_users("activity", [last], 30)[last]
    store.erase("activity", "both-sides", dt.datetime(2025, 12, 31, 23, 59, 30))  # under every key
    assert store.window_users("activity", [last], 30)[last] == before - 1
    with pytest.raises(ValueError, match="after the latest day"):
        store.rotate("activity", dt.date(2025, 12, 31), 30, "test", now=dt.datetime(2025, 12, 31, 12))
    store.close()
