"""The state of continual-release trees: closed days, noisy nodes and the per-person cap state.

A tree covers one key epoch of one metric (its `period`, named like the epoch). Each day of it is
*closed* once, in order: the people present that day (or in the window ending on it) go through the
flippancy cap (`privacy.continual.switched`) from the state the previous day left, and the number
counted is kept (`activity_tree_days.exact`: an aggregate the tree's nodes are differences of,
never shown). The cap state, one row per pseudonym (counted now, changes used), is a Parquet file
under `<activity_store>/<dataset>/tree/`, written and fsynced before the ledger transaction that
records it, so a committed day always has its state. A node's noisy value is drawn once and kept
(`activity_tree_nodes`): releases are sums of kept nodes, never re-noised.

An erased person leaves the state at the next closure or purge and is not counted again in that
epoch (counting a returning person afresh would give them a second set of changes).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stores.activity_duck import EVENTS, duck, erased_frame, quoted
from stores.activity_segments import fsync_file
from stores.database import Database, Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_tree_days (
    dataset TEXT NOT NULL,
    metric TEXT NOT NULL,
    period TEXT NOT NULL,
    day_index BIGINT NOT NULL,
    exact BIGINT NOT NULL,
    state_file TEXT NOT NULL,
    closed_at TEXT NOT NULL,
    PRIMARY KEY (dataset, metric, period, day_index)
);
CREATE TABLE IF NOT EXISTS activity_tree_nodes (
    dataset TEXT NOT NULL,
    metric TEXT NOT NULL,
    period TEXT NOT NULL,
    first_index BIGINT NOT NULL,
    end_index BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dataset, metric, period, first_index, end_index)
);
"""


@dataclass(frozen=True)
class Closed:
    index: int  # days since the period's first day
    exact: int
    state: Path


class Trees:
    def __init__(self, db: Database, folder: str | Path) -> None:
        self.db = db
        self.folder = Path(folder)
        self.db.create(SCHEMA)

    def closed(self, dataset: str, metric: str, period: str) -> dict[int, Closed]:
        rows = self.db.query(
            "SELECT day_index, exact, state_file FROM activity_tree_days "
            "WHERE dataset = ? AND metric = ? AND period = ?",
            (dataset, metric, period),
        )
        return {int(i): Closed(int(i), int(n), self.folder / f) for i, n, f in rows}

    def nodes(self, dataset: str, metric: str, period: str) -> dict[tuple[int, int], float]:
        rows = self.db.query(
            "SELECT first_index, end_index, value FROM activity_tree_nodes "
            "WHERE dataset = ? AND metric = ? AND period = ?",
            (dataset, metric, period),
        )
        return {(int(a), int(b)): float(v) for a, b, v in rows}

    def stage(self, dataset: str, metric: str, period: str, index: int) -> Path:
        """A new, unique path for the cap state after closing day `index` (fsync it, then commit)."""
        where = self.folder / dataset / "tree"
        where.mkdir(parents=True, exist_ok=True)
        return where / f"{metric}-{period}-{index:03d}-{uuid.uuid4().hex[:12]}.parquet"

    def commit(
        self,
        tx: Tx,
        dataset: str,
        metric: str,
        period: str,
        days: list[Closed],
        nodes: dict[tuple[int, int], float],
    ) -> bool:
        """Record closed days and new nodes in the caller's transaction; False (nothing written) if
        another process closed one of these days or drew one of these nodes first."""
        for day in days:
            if tx.one(
                "SELECT 1 FROM activity_tree_days WHERE dataset = ? AND metric = ? AND period = ? "
                "AND day_index = ?",
                (dataset, metric, period, day.index),
            ):
                return False
        for first, end in nodes:
            if tx.one(
                "SELECT 1 FROM activity_tree_nodes WHERE dataset = ? AND metric = ? AND period = ? "
                "AND first_index = ? AND end_index = ?",
                (dataset, metric, period, first, end),
            ):
                return False
        stamp = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        for day in days:
            fsync_file(day.state)
            tx.execute(
                "INSERT INTO activity_tree_days (dataset, metric, period, day_index, exact, state_file, "
                "closed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (dataset, metric, period, day.index, day.exact, self._relative(day.state), stamp),
            )
        for (first, end), value in sorted(nodes.items()):
            tx.execute(
                "INSERT INTO activity_tree_nodes (dataset, metric, period, first_index, end_index, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (dataset, metric, period, first, end, value),
            )
        return True

    def close_day(
        self,
        files: list[Path],
        erased: list[tuple[str, str]],
        first: dt.date,
        last: dt.date,
        changes: int,
        state_in: Path | None,
        state_out: Path,
    ) -> int:
        """One day of a continual-release tree: the people active in [first, last] switch through
        the flippancy cap (`privacy.continual.switched`, in SQL) from `state_in`; the new state is
        written to `state_out` (fsynced by `commit`). `files` are the epoch's event segments and
        `erased` its erasures (pseudonym, ts): anyone erased in the epoch is out. Returns how many
        people are counted."""
        present = (
            f"SELECT DISTINCT pseudonym FROM {EVENTS} e WHERE day BETWEEN $first AND $last "
            "AND pseudonym NOT IN (SELECT pseudonym FROM erased)"
            if files
            else "SELECT NULL::BLOB AS pseudonym WHERE false"
        )
        before = (
            f"SELECT pseudonym, counted, used FROM read_parquet('{quoted(state_in)}') "
            "WHERE pseudonym NOT IN (SELECT pseudonym FROM erased)"
            if state_in is not None
            else "SELECT NULL::BLOB AS pseudonym, NULL::BOOLEAN AS counted, NULL::INTEGER AS used WHERE false"
        )
        con = duck()
        try:
            con.register("erased", erased_frame(erased))
            params: dict = {"first": first, "last": last, "changes": changes}
            if files:
                params["files"] = [str(f) for f in files]
            con.execute(
                f"""COPY (
                WITH present AS ({present}), before AS ({before}),
                joined AS (
                    SELECT coalesce(b.pseudonym, p.pseudonym) AS pseudonym, coalesce(b.counted, false) AS was,
                           coalesce(b.used, 0) AS used, p.pseudonym IS NOT NULL AS wanted
                    FROM before b FULL OUTER JOIN present p ON b.pseudonym = p.pseudonym),
                moved AS (SELECT *, wanted <> was AND (NOT wanted OR used + 1 < $changes) AS flips
                          FROM joined)
                SELECT pseudonym, CASE WHEN flips THEN wanted ELSE was END AS counted,
                       CAST(used + CAST(flips AS INTEGER) AS INTEGER) AS used
                FROM moved ORDER BY pseudonym
                ) TO '{quoted(state_out)}' (FORMAT parquet, COMPRESSION zstd)""",
                params,
            )
            counted = f"SELECT count(*) FROM read_parquet('{quoted(state_out)}') WHERE counted"
            row = con.execute(counted).fetchone()
        finally:
            con.close()
        return int(row[0]) if row else 0

    def purge(self, dataset: str, erased_in: Callable[[str], list[tuple[str, str]]]) -> None:
        """Rewrite each tree's latest cap state without the people erased in its epoch
        (`erased_in(epoch)`: that epoch's erasures, pseudonym and ts)."""
        for epoch, path in self.latest_states(dataset):
            names = erased_in(epoch)
            if not names or not path.exists():
                continue
            temporary = path.with_suffix(".purging")
            con = duck()
            try:
                con.register("erased", erased_frame(names))
                con.execute(
                    f"""COPY (SELECT * FROM read_parquet('{quoted(path)}')
                    WHERE pseudonym NOT IN (SELECT pseudonym FROM erased))
                    TO '{quoted(temporary)}' (FORMAT parquet, COMPRESSION zstd)"""
                )
            finally:
                con.close()
            fsync_file(temporary)
            temporary.replace(path)

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.folder))

    def latest_states(self, dataset: str) -> list[tuple[str, Path]]:
        """(period, state file) of the last closed day of each tree of the dataset."""
        rows = self.db.query(
            "SELECT d.period, d.state_file FROM activity_tree_days d WHERE d.dataset = ? AND d.day_index = "
            "(SELECT MAX(day_index) FROM activity_tree_days x WHERE x.dataset = d.dataset "
            "AND x.metric = d.metric AND x.period = d.period)",
            (dataset,),
        )
        return [(str(period), self.folder / f) for period, f in rows]

    def sweep(self, dataset: str, stale: float = 3600.0) -> None:
        """Delete state files no closure needs: committed ones that are not the latest of their
        tree, and uncommitted ones (lost races, crashes) older than `stale` seconds. Which files
        are committed, and which are latest, come from one statement (one snapshot): a state another
        process commits meanwhile is not yet known here, so it counts as uncommitted and young."""
        rows = self.db.query(
            "SELECT d.state_file, d.day_index = (SELECT MAX(x.day_index) FROM activity_tree_days x "
            "WHERE x.dataset = d.dataset AND x.metric = d.metric AND x.period = d.period) "
            "FROM activity_tree_days d WHERE d.dataset = ?",
            (dataset,),
        )
        committed = {Path(f).name: bool(latest) for f, latest in rows}
        where = self.folder / dataset / "tree"
        if not where.is_dir():
            return
        now = time.time()
        for path in where.glob("*.parquet"):
            if committed.get(path.name):
                continue  # the latest state of its tree
            try:
                old = now - path.stat().st_mtime > stale
            except FileNotFoundError:
                continue  # swept by another asker meanwhile
            if path.name in committed or old:
                path.unlink(missing_ok=True)
