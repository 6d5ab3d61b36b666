"""Activity events and erasures, pseudonymised, durable, and counted exactly.

An activity stream is `(user_id, ts, op)` rows: `+` the user was active at `ts`, `-` an erasure
request that deletes every earlier `+` of the user (a later `+` counts again). A batch (one COPY, one
file) is stored in one write transaction: all of it or, if any row is bad, none of it, with the
first bad row's line number. Raw ids never reach the database: each `+` is stored as its pseudonyms
(`stores.pseudonyms`) under its day's epoch key and the later epochs' keys whose windows can reach
it; each `-` purges the person's earlier events under every live key and is kept in an erasure
ledger (its pseudonyms, when it applies) so it can be replayed after a restore.

Counts are exact distinct pseudonyms of one epoch over a range of days (`distinct_users`): a window
is counted in the pseudonyms of the epoch it ends in, so a person is one pseudonym in it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stores.database import Database, as_database
from stores.pseudonyms import PseudonymKeys, epoch_of, pseudonym

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_events (
    dataset TEXT NOT NULL,
    epoch TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    day TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_events_by_day ON activity_events (dataset, epoch, day);
CREATE INDEX IF NOT EXISTS activity_events_by_person ON activity_events (dataset, pseudonym);
CREATE TABLE IF NOT EXISTS activity_erasures (
    id {serial},
    dataset TEXT NOT NULL,
    ts TEXT NOT NULL,
    pseudonyms TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Event:
    user_id: str
    ts: dt.datetime  # UTC, naive
    op: Literal["+", "-"]


class BadEvent(ValueError):
    """A row that is not an event: the batch it came in is stored nowhere."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


@dataclass(frozen=True)
class Ingested:
    events: int  # `+` rows stored
    erasures: int  # `-` rows applied
    purged: int  # stored event rows the erasures deleted


def parse_events(text: str | Iterable[str], fmt: Literal["csv", "text", "jsonl"]) -> list[Event]:
    """Rows `user_id, ts, op` (CSV with an optional header, COPY's tab-separated text, or JSON lines
    with those keys) as events; BadEvent names the first bad line (1-based).

    >>> parse_events("user_id,ts,op\\nu1,2025-10-01T08:00:00Z,+\\n", "csv")[0].ts
    datetime.datetime(2025, 10, 1, 8, 0)
    >>> parse_events("u1\\t2025-10-01 08:00\\t-\\n", "text")[0].op
    '-'
    """
    lines = text.splitlines() if isinstance(text, str) else list(text)
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if fmt == "jsonl":
            try:
                raw = json.loads(line)
                fields = [raw["user_id"], raw["ts"], raw.get("op", "+")]
            except (ValueError, KeyError, TypeError) as err:
                raise BadEvent(number, f"not a JSON object with user_id and ts ({err})") from None
        elif fmt == "csv":
            fields = next(csv.reader(io.StringIO(line)))
            if number == 1 and [f.strip().lower() for f in fields] == ["user_id", "ts", "op"]:
                continue  # a header
        else:
            fields = line.rstrip("\n").split("\t")
        events.append(_event(number, [str(f) for f in fields]))
    return events


def _event(number: int, fields: list[str]) -> Event:
    if len(fields) == 2:
        fields = [*fields, "+"]
    if len(fields) != 3:
        raise BadEvent(number, f"expected 3 values (user_id, ts, op), found {len(fields)}")
    user_id, ts, op = (f.strip() for f in fields)
    if not user_id or user_id == "\\N":
        raise BadEvent(number, "user_id is empty")
    if op not in ("+", "-"):
        raise BadEvent(number, f"op must be + or -, not {op!r}")
    try:
        moment = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent(number, f"ts {ts!r} is not an ISO date and time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return Event(user_id, moment, op)  # type: ignore[arg-type]


class ActivityStore:
    def __init__(self, location: str | Path | Database, keys: PseudonymKeys | None = None) -> None:
        self.db = as_database(location)
        self.db.create(SCHEMA)
        self.keys = keys or PseudonymKeys(self.db)

    def ingest(self, dataset: str, events: Sequence[Event], window_days: int = 30) -> Ingested:
        """Store a batch in one transaction, in its order: all of it or (on any error) nothing."""
        rows: list[tuple[str, str, str, str, str]] = []
        added = erased = purged = 0
        now = dt.datetime.now(dt.UTC).isoformat()
        # Keys first (made or read outside the batch's transaction), so every erasure sees them all.
        days = {e.ts.date() for e in events if e.op == "+"}
        keyed = {day: self.keys.keys_for_event(dataset, day, window_days) for day in days}
        erasing = {e.user_id for e in events if e.op == "-"}
        names_of = {user: [p for _, p in self.keys.pseudonyms_of(dataset, user)] for user in erasing}
        memo: dict[tuple[str, str], str] = {}  # (epoch, raw id) -> pseudonym, for this batch only
        with self.db.write() as tx:
            for event in events:
                day = event.ts.date()
                if event.op == "+":
                    for epoch, key in keyed[day]:
                        name = memo.get((epoch, event.user_id))
                        if name is None:
                            name = memo[(epoch, event.user_id)] = pseudonym(key, event.user_id)
                        rows.append((dataset, epoch, name, day.isoformat(), event.ts.isoformat()))
                    added += 1
                    continue
                # an erasure applies to the events before it, the batch's included
                tx.executemany(_INSERT, rows)
                rows = []
                names = names_of[event.user_id]
                for name in names:
                    tx.execute(
                        "DELETE FROM activity_events WHERE dataset = ? AND pseudonym = ? AND ts <= ?",
                        (dataset, name, event.ts.isoformat()),
                    )
                    purged += tx.rowcount
                tx.execute(
                    "INSERT INTO activity_erasures (dataset, ts, pseudonyms, recorded_at) "
                    "VALUES (?, ?, ?, ?)",
                    (dataset, event.ts.isoformat(), json.dumps(names), now),
                )
                erased += 1
            tx.executemany(_INSERT, rows)
        return Ingested(added, erased, purged)

    def distinct_users(self, dataset: str, first: dt.date, last: dt.date) -> int:
        """Exact number of people active on any day of [first, last], counted in the pseudonyms of
        the epoch `last` falls in (the window's own epoch: one pseudonym per person)."""
        epoch = epoch_of(last)[0]
        row = self.db.query(
            "SELECT COUNT(DISTINCT pseudonym) FROM activity_events "
            "WHERE dataset = ? AND epoch = ? AND day >= ? AND day <= ?",
            (dataset, epoch, first.isoformat(), last.isoformat()),
        )
        return int(row[0][0]) if row else 0

    def close(self) -> None:
        self.db.close()


_INSERT = "INSERT INTO activity_events (dataset, epoch, pseudonym, day, ts) VALUES (?, ?, ?, ?, ?)"
