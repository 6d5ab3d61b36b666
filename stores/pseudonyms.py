"""The pseudonym key registry of activity datasets: one independent random key per epoch.

Activity events never store a raw user id: at ingestion the id becomes p = HMAC-SHA256(K_e, id),
K_e the key of the epoch (a calendar month, UTC) the event's day falls in. Keys are random
(`secrets.token_bytes`), never derived from a master key, so deleting an expired epoch's key
shreds what is left of its pseudonyms (crypto-shredding). An erasure request carries the raw id:
`pseudonyms_of` gives its pseudonym under every live key, to purge each.

A window (MAU over 30 days) that ends in epoch e+1 may start in epoch e: counted in e's pseudonyms
for its early days and e+1's for the rest, one person would count twice. So an event is also
written under the next epoch's key while a window of the next epoch can still contain its day
(`keys_for_event`); each window counts in the pseudonyms of the epoch it ends in.

Keys live in the ledger database (`stores.database`): created once per epoch in one serialised
write transaction, so replicas sharing a PostgreSQL ledger agree on every key.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from pathlib import Path

from stores.database import Database, as_database

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
"""


class ShreddedKey(LookupError):
    """The epoch's key was deleted at retention: its pseudonyms can no longer be computed."""


def epoch_of(day: dt.date) -> tuple[str, dt.date, dt.date]:
    """The calendar month holding `day`: its name and [first day, first day of the next month).

    >>> epoch_of(dt.date(2025, 12, 31))
    ('2025-12', datetime.date(2025, 12, 1), datetime.date(2026, 1, 1))
    """
    start = day.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return f"{start:%Y-%m}", start, end


class PseudonymKeys:
    def __init__(self, location: str | Path | Database) -> None:
        self.db = as_database(location)
        self.db.create(SCHEMA)
        self._known: dict[tuple[str, str], bytes] = {}  # keys never change once made (until shredded)

    def key(self, dataset: str, day: dt.date) -> bytes:
        """The key of the epoch holding `day`, created (once, by whichever process asks first)."""
        epoch, starts, ends = epoch_of(day)
        if (dataset, epoch) in self._known:
            return self._known[(dataset, epoch)]
        with self.db.read() as tx:
            row = tx.one(
                "SELECT key_hex FROM pseudonym_keys WHERE dataset = ? AND epoch = ?", (dataset, epoch)
            )
        if row is None:
            with self.db.write() as tx:
                row = tx.one(
                    "SELECT key_hex FROM pseudonym_keys WHERE dataset = ? AND epoch = ?", (dataset, epoch)
                )
                if row is None:
                    row = (secrets.token_bytes(32).hex(),)
                    tx.execute(
                        "INSERT INTO pseudonym_keys (dataset, epoch, key_hex, starts, ends) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (dataset, epoch, row[0], starts.isoformat(), ends.isoformat()),
                    )
        if row[0] is None:
            raise ShreddedKey(f"the pseudonym key of {dataset} for {epoch} was deleted at retention")
        key = self._known[(dataset, epoch)] = bytes.fromhex(row[0])
        return key

    def pseudonym(self, dataset: str, user_id: str, day: dt.date) -> str:
        return pseudonym(self.key(dataset, day), user_id)

    def keys_for_event(self, dataset: str, day: dt.date, window_days: int) -> list[tuple[str, bytes]]:
        """(epoch, key) pairs an event of `day` is written under: its own epoch's, and each later
        epoch's whose `window_days` windows can still contain `day` (a 30-day window ending on
        1 March reaches back into January, past all of February)."""
        epoch, _, ends = epoch_of(day)
        keys = [(epoch, self.key(dataset, day))]
        while (day - ends).days > -window_days:  # the window ending on `ends` reaches back to `day`
            keys.append((epoch_of(ends)[0], self.key(dataset, ends)))
            ends = epoch_of(ends)[2]
        return keys

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


def pseudonym(key: bytes, user_id: str) -> str:
    """HMAC-SHA256 of the raw id under an epoch key, hex.

    >>> pseudonym(bytes(32), "alice")[:16]
    'ce3837f76a54a635'
    """
    return hmac.digest(key, user_id.encode(), "sha256").hex()  # one-shot: no HMAC object per id
