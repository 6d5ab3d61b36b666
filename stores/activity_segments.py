"""Where activity events live: Parquet segments, listed in a manifest in the ledger database.

A batch becomes one segment per epoch it writes to (`<folder>/<dataset>/<epoch>/<id>.parquet`,
columns pseudonym BLOB, day DATE, ts TIMESTAMP). Commit protocol, so an acknowledged batch survives
kill -9 and an interrupted one leaves nothing that counts:

1. each segment is written as `.tmp-<id>.parquet` and fsynced;
2. one ledger write transaction lists the final names in `activity_segments` (with the batch's
   erasures): this is the commit point;
3. the temporaries are renamed to their final names and the folders fsynced; then the batch is
   acknowledged.

`reconcile` (at start-up, before anything is served) rolls a crash between 2 and 3 forward, deletes
temporaries that never committed, adopts final-named files the manifest lacks (it was restored from
an older backup: a final name only ever appears after a commit) and drops entries whose file is gone.
Segments rewritten by a purge are retired, not deleted at once, so a count that listed them still
reads them; `sweep` deletes retired files later.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from stores.database import Database, Tx
from stores.erasures import sync_folder

log = logging.getLogger("privacylens.activity")

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_segments (
    dataset TEXT NOT NULL,
    epoch TEXT NOT NULL,
    file TEXT NOT NULL,
    events BIGINT NOT NULL,
    erased_through BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT,
    PRIMARY KEY (dataset, file)
);
"""

RETIRED_GRACE = dt.timedelta(minutes=10)  # a count started before a purge may still read these


@dataclass(frozen=True)
class Staged:
    epoch: str
    temporary: Path
    final: Path
    events: int


class Segments:
    def __init__(self, db: Database, folder: Path) -> None:
        self.db = db
        self.db.create(SCHEMA)
        self.folder = folder

    def stage(self, dataset: str, epoch: str) -> tuple[Path, Path]:
        """A temporary path to write a new segment of the epoch to, and its final name."""
        where = self.folder / dataset / epoch
        where.mkdir(parents=True, exist_ok=True)
        name = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        return where / f".tmp-{name}", where / name

    def commit(self, tx: Tx, dataset: str, staged: list[Staged], erased_through: dict[str, int]) -> None:
        """Step 2, in the caller's write transaction."""
        now = _now()
        tx.executemany(
            "INSERT INTO activity_segments (dataset, epoch, file, events, erased_through, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (dataset, s.epoch, self._relative(s.final), s.events, erased_through.get(s.epoch, 0), now)
                for s in staged
            ],
        )

    def publish(self, staged: list[Staged]) -> None:
        """Step 3: after the commit."""
        for s in staged:
            os.replace(s.temporary, s.final)
        for folder in {s.final.parent for s in staged}:
            sync_folder(folder)

    def files(self, dataset: str, epoch: str) -> list[Path]:
        """The epoch's live segments."""
        return [
            self.folder / str(name)
            for (name,) in self.db.query(
                "SELECT file FROM activity_segments WHERE dataset = ? AND epoch = ? AND retired_at IS NULL "
                "ORDER BY file",
                (dataset, epoch),
            )
        ]

    def behind(self, dataset: str, epoch: str, latest: int) -> int:
        """How many live segments of the epoch have not been purged through erasure row `latest`."""
        row = self.db.query(
            "SELECT COUNT(*) FROM activity_segments WHERE dataset = ? AND epoch = ? AND retired_at IS NULL "
            "AND erased_through < ?",
            (dataset, epoch, latest),
        )
        return int(row[0][0]) if row else 0

    def epochs(self, dataset: str) -> list[str]:
        return [
            str(e)
            for (e,) in self.db.query(
                "SELECT DISTINCT epoch FROM activity_segments WHERE dataset = ? AND retired_at IS NULL "
                "ORDER BY epoch",
                (dataset,),
            )
        ]

    def replace(
        self, tx: Tx, dataset: str, epoch: str, old: list[Path], new: Staged | None, through: int
    ) -> None:
        """A purge or compaction: retire `old`, list `new` (None when nothing is left)."""
        now = _now()
        tx.executemany(
            "UPDATE activity_segments SET retired_at = ? WHERE dataset = ? AND file = ?",
            [(now, dataset, self._relative(p)) for p in old],
        )
        if new is not None:
            self.commit(tx, dataset, [new], {epoch: through})

    def retire_epoch(self, tx: Tx, dataset: str, epoch: str) -> None:
        tx.execute(
            "UPDATE activity_segments SET retired_at = ? "
            "WHERE dataset = ? AND epoch = ? AND retired_at IS NULL",
            (_now(), dataset, epoch),
        )

    def sweep(self, dataset: str, grace: dt.timedelta = RETIRED_GRACE) -> int:
        """Delete retired segment files (and their manifest rows) retired more than `grace` ago."""
        cutoff = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - grace).isoformat()
        rows = self.db.query(
            "SELECT file FROM activity_segments "
            "WHERE dataset = ? AND retired_at IS NOT NULL AND retired_at <= ?",
            (dataset, cutoff),
        )
        for (name,) in rows:
            (self.folder / str(name)).unlink(missing_ok=True)
        with self.db.write() as tx:
            tx.executemany(
                "DELETE FROM activity_segments WHERE dataset = ? AND file = ?",
                [(dataset, n) for (n,) in rows],
            )
        return len(rows)

    def reconcile(self, dataset: str) -> dict[str, int]:
        """Make the manifest and the folder agree after a crash or a restore (see the module doc)."""
        listed = {
            str(name): retired
            for name, retired in self.db.query(
                "SELECT file, retired_at FROM activity_segments WHERE dataset = ?", (dataset,)
            )
        }
        counts = {"rolled_forward": 0, "discarded": 0, "adopted": 0, "missing": 0}
        base = self.folder / dataset
        adopt, drop = [], []
        present = set()
        for path in sorted(base.glob("*/*.parquet")) if base.exists() else []:
            relative = self._relative(path)
            if path.name.startswith(".tmp-"):
                final = path.with_name(path.name.removeprefix(".tmp-"))
                if self._relative(final) in listed:
                    os.replace(path, final)
                    present.add(self._relative(final))
                    counts["rolled_forward"] += 1
                else:
                    path.unlink()
                    counts["discarded"] += 1
                continue
            present.add(relative)
            if relative not in listed:
                adopt.append(path)
        for name, retired in listed.items():
            if name not in present and retired is None:
                drop.append(name)
                log.warning("activity segment %s is listed but missing: its events are lost", name)
        # A live segment is gone but the one it replaced is back (the folder was restored from before
        # a purge): count the old one again; erasures still apply to it and the next purge merges it.
        lost = {name.split("/")[1] for name in drop}
        revive = [n for n, retired in listed.items() if retired and n in present and n.split("/")[1] in lost]
        if adopt or drop or revive:
            with self.db.write() as tx:
                tx.executemany(
                    "UPDATE activity_segments SET retired_at = NULL, erased_through = 0 "
                    "WHERE dataset = ? AND file = ?",
                    [(dataset, n) for n in revive],
                )
                now = _now()
                tx.executemany(
                    "INSERT INTO activity_segments "
                    "(dataset, epoch, file, events, erased_through, created_at) VALUES (?, ?, ?, ?, 0, ?)",
                    [(dataset, p.parent.name, self._relative(p), 0, now) for p in adopt],
                )
                tx.executemany(
                    "DELETE FROM activity_segments WHERE dataset = ? AND file = ?",
                    [(dataset, n) for n in drop],
                )
        counts["adopted"], counts["missing"] = len(adopt) + len(revive), len(drop)
        for folder in {p.parent for p in base.glob("*/")} if base.exists() else set():
            sync_folder(folder)
        return counts

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
