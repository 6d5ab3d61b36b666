"""The erasure ledger of activity datasets, kept twice so a restore cannot lose an erasure.

An erasure (a GDPR/CCPA request, an `op = '-'` row, `DELETE ... WHERE user_id = ...`) carries a raw
id; it is kept as that person's pseudonym under every live key (never the raw id) and the time it
applies up to: every event of the person at or before it is gone from later releases.

Each erasure is written to the ledger database (`activity_erased`, one row per epoch pseudonym) and
then appended, fsynced, to a journal in the dataset's event folder (`erasures.jsonl`). Restoring
either from a backup loses nothing: `reconcile` completes each from the other before anything is
served, and the segments are purged against the union (`stores.activity_segments`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stores.database import Database, Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_erased (
    id {serial},
    erasure TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epoch TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_erased_by_epoch ON activity_erased (dataset, epoch);
"""


@dataclass(frozen=True)
class Erasure:
    erasure: str  # a random id: the same erasure in the database and the journal
    ts: dt.datetime  # UTC, naive: events at or before it are erased
    names: Mapping[str, str]  # epoch -> the person's pseudonym (hex) under that epoch's key
    recorded_at: str

    @classmethod
    def new(cls, ts: dt.datetime, names: Mapping[str, str]) -> Erasure:
        stamp = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        return cls(uuid.uuid4().hex, ts, dict(names), stamp)

    def line(self) -> str:
        return json.dumps(
            {
                "erasure": self.erasure,
                "ts": self.ts.isoformat(),
                "names": dict(self.names),
                "at": self.recorded_at,
            },
            sort_keys=True,
        )

    @classmethod
    def of_line(cls, line: str) -> Erasure:
        raw = json.loads(line)
        return cls(raw["erasure"], dt.datetime.fromisoformat(raw["ts"]), raw["names"], raw["at"])


class ErasureLedger:
    def __init__(self, db: Database, folder: Path) -> None:
        self.db = db
        self.db.create(SCHEMA)
        self.folder = folder

    def journal(self, dataset: str) -> Path:
        return self.folder / dataset / "erasures.jsonl"

    def record(self, tx: Tx, dataset: str, erasures: Iterable[Erasure]) -> None:
        """In the caller's write transaction (with the batch it came in)."""
        rows = [
            (e.erasure, dataset, epoch, name, e.ts.isoformat(), e.recorded_at)
            for e in erasures
            for epoch, name in sorted(e.names.items())
        ]
        tx.executemany(_INSERT, rows)

    def append_journal(self, dataset: str, erasures: Iterable[Erasure]) -> None:
        """After the database commit: the second copy, fsynced before the batch is acknowledged."""
        lines = "".join(e.line() + "\n" for e in erasures)
        if not lines:
            return
        path = self.journal(dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())

    def names(self, dataset: str, epoch: str) -> list[tuple[str, str, int]]:
        """(pseudonym hex, ts, id) of every erasure under this epoch's key."""
        return [
            (str(p), str(ts), int(i))
            for p, ts, i in self.db.query(
                "SELECT pseudonym, ts, id FROM activity_erased WHERE dataset = ? AND epoch = ?",
                (dataset, epoch),
            )
        ]

    def latest(self, dataset: str, epoch: str) -> int:
        """The newest erasure row of the epoch (0 if none): segments purged through it are clean."""
        row = self.db.query(
            "SELECT MAX(id) FROM activity_erased WHERE dataset = ? AND epoch = ?", (dataset, epoch)
        )
        return int(row[0][0]) if row and row[0][0] is not None else 0

    def count(self, dataset: str) -> int:
        row = self.db.query(
            "SELECT COUNT(DISTINCT erasure) FROM activity_erased WHERE dataset = ?", (dataset,)
        )
        return int(row[0][0]) if row else 0

    def forget_epoch(self, tx: Tx, dataset: str, epoch: str) -> None:
        """Retention: pseudonyms under a shredded key name nobody any more."""
        tx.execute("DELETE FROM activity_erased WHERE dataset = ? AND epoch = ?", (dataset, epoch))

    def reconcile(self, dataset: str, live_epochs: set[str]) -> int:
        """Complete the database and the journal from each other (names under live keys only);
        returns how many erasures the database lacked (it was restored from an older backup)."""
        journal = {e.erasure: e for e in self._journal_entries(dataset)}
        stored: dict[str, Erasure] = {}
        for erasure_id, epoch, name, ts, at in self.db.query(
            "SELECT erasure, epoch, pseudonym, ts, recorded_at FROM activity_erased WHERE dataset = ? "
            "ORDER BY id",
            (dataset,),
        ):
            known = stored.get(erasure_id)
            names = {**(known.names if known else {}), epoch: name}
            stored[erasure_id] = Erasure(erasure_id, dt.datetime.fromisoformat(ts), names, at)
        missing = []
        for key, e in journal.items():
            names = {k: v for k, v in e.names.items() if k in live_epochs}
            if key not in stored and names:
                missing.append(Erasure(e.erasure, e.ts, names, e.recorded_at))
        if missing:
            with self.db.write() as tx:
                self.record(tx, dataset, missing)
        union = [*stored.values(), *missing]
        if set(journal) != {e.erasure for e in union}:
            _write_atomically(self.journal(dataset), "".join(e.line() + "\n" for e in union))
        return len(missing)

    def _journal_entries(self, dataset: str) -> list[Erasure]:
        path = self.journal(dataset)
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(Erasure.of_line(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-append: its erasure is in the database
        return out

    def rewrite_journal(self, dataset: str, live_epochs: set[str]) -> None:
        """After retention forgot epochs: the journal keeps only names under live keys."""
        kept = []
        for e in self._journal_entries(dataset):
            names = {k: v for k, v in e.names.items() if k in live_epochs}
            if names:
                kept.append(Erasure(e.erasure, e.ts, names, e.recorded_at).line() + "\n")
        if self.journal(dataset).exists():
            _write_atomically(self.journal(dataset), "".join(kept))


_INSERT = (
    "INSERT INTO activity_erased (erasure, dataset, epoch, pseudonym, ts, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a directory, so a rename in it survives a crash."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
