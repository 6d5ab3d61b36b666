"""The pseudonym key registry of activity datasets: one independent random key per epoch.

Activity events never store a raw user id: at ingestion the id becomes p = HMAC-SHA256(K_e, id),
K_e the key of the epoch the event's day falls in (a calendar month, UTC, unless a rotation started
another: `stores.epochs`). Keys are random
(`secrets.token_bytes`), never derived from a master key, so deleting an expired epoch's key
shreds what is left of its pseudonyms (crypto-shredding). An erasure request carries the raw id:
`pseudonyms_of` gives its pseudonym under every live key, to purge each.

A window (MAU over 30 days) that ends in epoch e+1 may start in epoch e: counted in e's pseudonyms
for its early days and e+1's for the rest, one person would count twice. So an event is also
written under the key of every epoch that counts a window containing its day (`keys_for_event`),
and each window is counted in one epoch's pseudonyms (`stores.epochs.Calendar.counting`).

Keys live in the ledger database (`stores.database`): created once per epoch in one serialised
write transaction, so replicas sharing a PostgreSQL ledger agree on every key.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from pathlib import Path

from stores.database import Database, Tx, as_database
from stores.epochs import Calendar, Epoch, Rotation, rotation

SCHEMA = """
CREATE TABLE IF NOT EXISTS pseudonym_keys (
    dataset TEXT NOT NULL,
    epoch TEXT NOT NULL,
    key_hex TEXT,
    starts TEXT NOT NULL,  -- ISO dates: they compare as text
    ends TEXT NOT NULL,
    shredded_at TEXT,
    PRIMARY KEY (dataset, epoch)
);
CREATE TABLE IF NOT EXISTS pseudonym_rotations (
    dataset TEXT NOT NULL,
    effective TEXT NOT NULL,
    counts_from TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    PRIMARY KEY (dataset, effective)
);
"""


class ShreddedKey(LookupError):
    """The epoch's key was deleted at retention: its pseudonyms can no longer be computed."""


class PseudonymKeys:
    def __init__(self, location: str | Path | Database) -> None:
        self.db = as_database(location)
        self.db.create(SCHEMA)
        self._known: dict[tuple[str, str], bytes] = {}  # keys never change once made (until shredded)

    def calendar(self, dataset: str) -> Calendar:
        """The dataset's epochs as of now (rotations are read each time: another process may add one)."""
        rows = self.db.query(
            "SELECT effective, counts_from FROM pseudonym_rotations WHERE dataset = ? ORDER BY effective",
            (dataset,),
        )
        return Calendar([Rotation(_day(e), _day(c)) for e, c in rows])

    def key(self, dataset: str, day: dt.date) -> bytes:
        """The key of the epoch holding `day`."""
        return self.epoch_key(dataset, self.calendar(dataset).holding(day))

    def epoch_key(self, dataset: str, epoch: Epoch) -> bytes:
        """The epoch's key, created (once, by whichever process asks first)."""
        if (dataset, epoch.name) in self._known:
            return self._known[(dataset, epoch.name)]
        find = "SELECT key_hex FROM pseudonym_keys WHERE dataset = ? AND epoch = ?"
        with self.db.read() as tx:
            row = tx.one(find, (dataset, epoch.name))
        if row is None:
            with self.db.write() as tx:
                row = tx.one(find, (dataset, epoch.name))
                if row is None:
                    row = (secrets.token_bytes(32).hex(),)
                    tx.execute(
                        "INSERT INTO pseudonym_keys (dataset, epoch, key_hex, starts, ends) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (dataset, epoch.name, row[0], epoch.starts.isoformat(), epoch.ends.isoformat()),
                    )
        if row[0] is None:
            raise ShreddedKey(f"the pseudonym key of {dataset} for {epoch.name} was deleted at retention")
        key = self._known[(dataset, epoch.name)] = bytes.fromhex(row[0])
        return key

    def pseudonym(self, dataset: str, user_id: str, day: dt.date) -> str:
        return pseudonym(self.key(dataset, day), user_id)

    def keys_for_event(
        self, dataset: str, day: dt.date, window_days: int, calendar: Calendar | None = None
    ) -> list[tuple[str, bytes]]:
        """(epoch, key) pairs an event of `day` is written under: its own epoch's, and each one's
        that counts a window of up to `window_days` days containing `day` (a 30-day window ending
        on 1 March reaches back into January, past all of February)."""
        calendar = calendar or self.calendar(dataset)
        return [(e.name, self.epoch_key(dataset, e)) for e in calendar.written(day, window_days)]

    def rotate(
        self, tx: Tx, dataset: str, effective: dt.date, latest_stored: dt.date, window_days: int
    ) -> Rotation:
        """Start a new epoch (a new random key) on `effective`, in the caller's write transaction.
        `latest_stored` is the latest day an event may already be stored for (ValueError unless
        `effective` is after it): the windows reaching back to it stay counted under the old key."""
        made = rotation(effective, latest_stored, window_days)
        if tx.one(
            "SELECT 1 FROM pseudonym_rotations WHERE dataset = ? AND effective = ?",
            (dataset, effective.isoformat()),
        ):
            raise ValueError(f"a rotation of {dataset} on {effective} exists already")
        tx.execute(
            "INSERT INTO pseudonym_rotations (dataset, effective, counts_from, decided_at) "
            "VALUES (?, ?, ?, ?)",
            (dataset, effective.isoformat(), made.counts_from.isoformat(), _now()),
        )
        # The key it cuts short keeps its recorded end: it counts windows through the overlap.
        return made

    def shredded(self, dataset: str, epoch: str) -> bool:
        return bool(
            self.db.query(
                "SELECT 1 FROM pseudonym_keys WHERE dataset = ? AND epoch = ? AND key_hex IS NULL",
                (dataset, epoch),
            )
        )

    def pseudonyms_of(self, dataset: str, user_id: str) -> list[tuple[str, str]]:
        """The raw id's pseudonym under every live (not shredded) key: what an erasure purges."""
        rows = self.db.query(
            "SELECT epoch, key_hex FROM pseudonym_keys WHERE dataset = ? AND key_hex IS NOT NULL "
            "ORDER BY epoch",
            (dataset,),
        )
        return [(epoch, pseudonym(bytes.fromhex(key_hex), user_id)) for epoch, key_hex in rows]

    def live_epochs(self, dataset: str) -> list[str]:
        """Epochs whose key has not been shredded."""
        return [
            str(epoch)
            for (epoch,) in self.db.query(
                "SELECT epoch FROM pseudonym_keys WHERE dataset = ? AND key_hex IS NOT NULL ORDER BY epoch",
                (dataset,),
            )
        ]

    def shred(self, dataset: str, before: dt.date, now: dt.datetime | None = None) -> list[str]:
        """Delete the keys of epochs that ended before `before` (retention); returns their names."""
        stamp = (now or dt.datetime.now(dt.UTC)).isoformat()
        with self.db.write() as tx:
            rows = tx.execute(
                "SELECT epoch FROM pseudonym_keys WHERE dataset = ? AND key_hex IS NOT NULL AND ends <= ?",
                (dataset, before.isoformat()),
            )
            for (epoch,) in rows:
                self._known.pop((dataset, epoch), None)
                tx.execute(
                    "UPDATE pseudonym_keys SET key_hex = NULL, shredded_at = ? "
                    "WHERE dataset = ? AND epoch = ?",
                    (stamp, dataset, epoch),
                )
        return [epoch for (epoch,) in rows]

    def close(self) -> None:
        self.db.close()


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def pseudonym(key: bytes, user_id: str) -> str:
    """HMAC-SHA256 of the raw id under an epoch key, hex.

    >>> pseudonym(bytes(32), "alice")[:16]
    'ce3837f76a54a635'
    """
    return hmac.digest(key, user_id.encode(), "sha256").hex()  # one-shot: no HMAC object per id
