"""Activity events and erasures: pseudonymised at ingestion, durable, and counted exactly.

An activity stream is `(user_id, ts, op)` rows: `+` the user was active at `ts`, `-` an erasure
request that removes every event of the user at or before its time (a later `+` counts again). A
batch (one COPY, one file) is checked whole before anything is written: a bad row refuses the batch
with its line number and nothing of it is kept. Checking, pseudonymising (HMAC-SHA256 computed in
DuckDB from the epoch key, `stores.pseudonyms`) and writing happen in an in-memory DuckDB that may
not spill to disk, so a raw id never reaches a file. Each `+` is stored under its day's epoch key and
the later epochs' keys whose windows can reach its day (`PseudonymKeys.keys_for_event`).

Counts are exact distinct pseudonyms of one epoch over a range of days, with every recorded
erasure of that epoch applied as an anti-join (so an erasure takes effect for every later count at
once, including late events and segments restored from a backup); `flush_deletes` then purges the
erased events physically. Where things are kept: `stores.activity_segments` (events),
`stores.erasures` (the erasure ledger), `stores.pseudonyms` (keys).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from stores import audit
from stores.activity_duck import EVENTS, NOT_ERASED, duck, erased_frame, path_list, quoted
from stores.activity_input import BadEvent, Batch
from stores.activity_segments import Segments, Staged, fsync_file
from stores.database import Database, as_database
from stores.distinct_estimates import Backend, Estimate, new_sketch
from stores.epochs import Rotation
from stores.erasures import Erasure, ErasureLedger
from stores.pseudonyms import PseudonymKeys, ShreddedKey

log = logging.getLogger("privacylens.activity")

COMPACT_AT = 32  # an epoch with more live segments than this is merged into one by flush_deletes


@dataclass(frozen=True)
class Ingested:
    events: int  # `+` rows accepted (stored, unless an erasure in the same batch covers them)
    erasures: int  # `-` rows recorded


@dataclass(frozen=True)
class Flushed:
    epochs: int  # epochs rewritten
    purged: int  # stored event rows removed
    segments: int  # live segments left


class ActivityStore:
    def __init__(
        self, location: str | Path | Database, folder: str | Path, keys: PseudonymKeys | None = None
    ):
        self.db = as_database(location)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keys = keys or PseudonymKeys(self.db)
        self.db.create(audit.SCHEMA)
        self.erasures = ErasureLedger(self.db, self.folder)
        self.segments = Segments(self.db, self.folder)

    # ---- ingestion ----------------------------------------------------------------------------

    def ingest(
        self,
        dataset: str,
        batch: Batch,
        window_days: int = 30,
        now: dt.datetime | None = None,
        future_grace: dt.timedelta = dt.timedelta(minutes=5),
        actor: str | None = None,
        domains: Mapping[str, Sequence[str]] | None = None,
    ) -> Ingested:
        """Store a batch: all of it, durably, before returning, or (BadEvent) none of it. With an
        `actor`, the batch's audit row (who, how many events and erasures) commits with it.
        `domains` are the dataset's segment columns and their public values: a batch's segment
        values must be among them (or empty); columns it does not carry are stored empty."""
        if len(batch) == 0:
            return Ingested(0, 0)
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        domains = domains or {}
        con = duck()
        try:
            con.register("raw", _frame(batch, domains))
            _check(con, now + future_grace)
            _check_segments(con, domains)
            kept = "".join(f', "{name}"' for name in domains)
            con.execute(
                "CREATE TEMP TABLE ev AS SELECT user_id, CAST(TRY_CAST(ts AS TIMESTAMPTZ) AT TIME ZONE 'UTC' "
                f"AS TIMESTAMP) AS t, op, line{kept} FROM raw"
            )
            erasures = self._erasures(con, dataset, window_days)
            counted = con.execute("SELECT count(*) FROM ev WHERE op = '+'").fetchone()
            added = int(counted[0]) if counted else 0
            days = [
                d for (d,) in con.execute("SELECT DISTINCT CAST(t AS DATE) FROM ev WHERE op = '+'").fetchall()
            ]
            targets: dict[str, tuple[bytes, list[dt.date]]] = {}
            calendar = self.keys.calendar(dataset)
            for day in days:
                try:
                    pairs = self.keys.keys_for_event(dataset, day, window_days, calendar)
                except ShreddedKey:
                    line = con.execute(
                        "SELECT min(line) FROM ev WHERE op = '+' AND CAST(t AS DATE) = ?", [day]
                    ).fetchone()
                    raise BadEvent(
                        int(line[0]) if line else 0,
                        f"events of {day:%Y-%m} are past the dataset's retention and can no longer be stored",
                    ) from None
                for epoch, key in pairs:
                    targets.setdefault(epoch, (key, []))[1].append(day)
            staged, through = [], {}
            try:
                for epoch, (key, epoch_days) in sorted(targets.items()):
                    known = self.erasures.names(dataset, epoch)
                    through[epoch] = max((i for _, _, i in known), default=0)
                    names = [(p, ts) for p, ts, _ in known]
                    names += [(e.names[epoch], e.ts.isoformat()) for e in erasures if epoch in e.names]
                    segment = self._write_segment(con, dataset, epoch, key, epoch_days, names, list(domains))
                    staged.append(segment)
                with self.db.write() as tx:
                    self.erasures.record(tx, dataset, erasures)
                    self.segments.commit(tx, dataset, [s for s in staged if s.events], through)
                    if actor is not None:
                        detail = {"events": added, "erasures": len(erasures)}
                        audit.append(tx, "activity ingested", actor, dataset, detail)
            except BaseException:
                for s in staged:
                    s.temporary.unlink(missing_ok=True)
                raise
            self.segments.publish([s for s in staged if s.events])
            for s in staged:
                if not s.events:
                    s.temporary.unlink(missing_ok=True)
            self.erasures.append_journal(dataset, erasures)
            return Ingested(added, len(erasures))
        finally:
            con.close()

    def erase(
        self,
        dataset: str,
        user_id: str,
        ts: dt.datetime | None = None,
        window_days: int = 30,
        actor: str | None = None,
    ) -> None:
        """Record one erasure (now, unless `ts`): the person's events up to then leave every later count."""
        moment = (ts or dt.datetime.now(dt.UTC).replace(tzinfo=None)).isoformat()
        self.ingest(dataset, Batch.of_rows([(user_id, moment, "-")]), window_days, actor=actor)

    def _erasures(self, con: duckdb.DuckDBPyConnection, dataset: str, window_days: int) -> list[Erasure]:
        rows = con.execute("SELECT user_id, t FROM ev WHERE op = '-' ORDER BY line").fetchall()
        out = []
        calendar = self.keys.calendar(dataset)
        for user_id, moment in rows:
            # Keys for every epoch an event up to this moment can be stored under, so a late event
            # (ingested after the erasure, dated before it) is erased too.
            self.keys.keys_for_event(dataset, moment.date(), window_days, calendar)
            out.append(Erasure.new(moment, dict(self.keys.pseudonyms_of(dataset, user_id))))
        return out

    def _write_segment(
        self,
        con: duckdb.DuckDBPyConnection,
        dataset: str,
        epoch: str,
        key: bytes,
        days: list[dt.date],
        erased: list[tuple[str, str]],
        segments: list[str],
    ) -> Staged:
        temporary, final = self.segments.stage(dataset, epoch)
        con.register("erased", erased_frame(erased))
        inner, outer = _pads(key)
        carried = "".join(f', ev."{name}"' for name in segments)
        listed = "".join(f', "{name}"' for name in segments)
        # One HMAC per distinct person (not per event), then the erasure anti-join on the result.
        written = con.execute(
            f"""COPY (
                WITH people AS (SELECT DISTINCT user_id FROM ev WHERE op = '+'),
                named AS (SELECT user_id, {_HMAC} AS pseudonym FROM people ev),
                e AS (
                    SELECT named.pseudonym, CAST(ev.t AS DATE) AS day, ev.t AS ts{carried}
                    FROM ev JOIN named USING (user_id)
                    WHERE ev.op = '+' AND CAST(ev.t AS DATE) IN (SELECT unnest($days::DATE[]))
                )
                SELECT pseudonym, day, ts{listed} FROM e WHERE {NOT_ERASED} ORDER BY day
            ) TO '{quoted(temporary)}' (FORMAT parquet, COMPRESSION zstd)""",
            {"inner": inner, "outer": outer, "days": days},
        ).fetchone()
        con.unregister("erased")
        fsync_file(temporary)
        return Staged(epoch, temporary, final, int(written[0]) if written else 0)

    # ---- counting -----------------------------------------------------------------------------

    def distinct_users(self, dataset: str, first: dt.date, last: dt.date) -> int:
        """Exact number of people active on any day of [first, last]: a window ending on `last`,
        counted in the pseudonyms of the epoch that counts it (one pseudonym per person)."""
        epoch = self.keys.calendar(dataset).counting(last).name
        rows = self._count(dataset, epoch, first, last, by_day=False)
        return int(rows[0][1]) if rows else 0

    def daily_users(self, dataset: str, first: dt.date, last: dt.date) -> dict[dt.date, int]:
        """Exact DAU of every day of [first, last] (days without events are 0), each day counted
        in the epoch holding it."""
        calendar = self.keys.calendar(dataset)
        out: dict[dt.date, int] = {}
        day = first
        while day <= last:
            epoch = calendar.holding(day)
            stop = min(last, epoch.ends - dt.timedelta(days=1))
            counted = dict(self._count(dataset, epoch.name, day, stop, by_day=True))
            while day <= stop:
                out[day] = int(counted.get(day, 0))
                day += dt.timedelta(days=1)
        return out

    def window_users(self, dataset: str, ends: Sequence[dt.date], window_days: int) -> dict[dt.date, int]:
        """Exact distinct people in the `window_days` days ending on each of `ends`: one query per
        epoch, each window counted in the pseudonyms of the epoch that counts it."""
        calendar = self.keys.calendar(dataset)
        out: dict[dt.date, int] = {end: 0 for end in ends}
        by_epoch: dict[str, list[dt.date]] = {}
        for end in ends:
            by_epoch.setdefault(calendar.counting(end).name, []).append(end)
        for epoch, epoch_ends in by_epoch.items():
            out.update(self._windows(dataset, epoch, epoch_ends, window_days))
        return out

    def erased(self, dataset: str, epoch: str) -> list[tuple[str, str]]:
        """The epoch's erasures as (pseudonym hex, ts)."""
        return [(p, ts) for p, ts, _ in self.erasures.names(dataset, epoch)]

    def rotate(
        self,
        dataset: str,
        effective: dt.date,
        window_days: int,
        actor: str,
        now: dt.datetime | None = None,
        future_grace: dt.timedelta = dt.timedelta(minutes=5),
    ) -> Rotation:
        """A new pseudonym key from `effective` on (audited). Nothing stored can be dated after
        now + grace (ingestion refuses it), so `effective` must come later; the windows that reach
        back before it was decided stay counted under the old key (`stores.epochs`)."""
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        latest = (now + future_grace).date()
        with self.db.write() as tx:
            made = self.keys.rotate(tx, dataset, effective, latest, window_days)
            detail = {"effective": effective.isoformat(), "counts_from": made.counts_from.isoformat()}
            audit.append(tx, "pseudonym key rotated", actor, dataset, detail)
        return made

    def segment_users(
        self, dataset: str, column: str, per_person: int, ends: Sequence[dt.date], window_days: int
    ) -> dict[dt.date, dict[str, int]]:
        """Exact people per value of a segment column in the `window_days` days ending on each of
        `ends` (1: a day's DAU, in the epoch holding it; more: a window, in the epoch counting it).
        A person counts in at most `per_person` values per window: those of their earliest events
        (ties by value), so one person moves at most `per_person` of the counts, by 1 each."""
        calendar = self.keys.calendar(dataset)
        pick = calendar.holding if window_days == 1 else calendar.counting
        by_epoch: dict[str, list[dt.date]] = {}
        for end in ends:
            by_epoch.setdefault(pick(end).name, []).append(end)
        out: dict[dt.date, dict[str, int]] = {end: {} for end in ends}
        sql = f"""WITH ends AS (SELECT unnest($ends::DATE[]) AS end_day),
            e AS (SELECT pseudonym, day, ts, "{column}" AS segment FROM {EVENTS} e
                  WHERE day BETWEEN $first AND $last AND "{column}" IS NOT NULL AND {NOT_ERASED}),
            firsts AS (SELECT end_day, pseudonym, segment, min(ts) AS t FROM ends
                       JOIN e ON e.day > end_day - $window::INTEGER AND e.day <= end_day GROUP BY ALL),
            ranked AS (SELECT end_day, segment,
                       row_number() OVER (PARTITION BY end_day, pseudonym ORDER BY t, segment) AS r
                       FROM firsts)
            SELECT end_day, segment, count(*) FROM ranked WHERE r <= $cap GROUP BY ALL"""

        def run(con: duckdb.DuckDBPyConnection, params: dict) -> list[tuple]:
            try:
                return con.execute(sql, params).fetchall()
            except duckdb.BinderException:  # no segment of this epoch carries the column yet
                return []

        for epoch, epoch_ends in by_epoch.items():
            params = {
                "ends": epoch_ends,
                "first": min(epoch_ends) - dt.timedelta(days=window_days - 1),
                "last": max(epoch_ends),
                "window": window_days,
                "cap": per_person,
            }
            for end, value, n in self._over_segments(dataset, epoch, run, params) or []:
                out[end][str(value)] = int(n)
        return out

    def _windows(self, dataset: str, epoch: str, ends: list[dt.date], window_days: int) -> dict[dt.date, int]:
        rows = self._counted(
            dataset,
            epoch,
            f"""WITH ends AS (SELECT unnest($ends::DATE[]) AS end_day),
            e AS (SELECT pseudonym, day, ts FROM {EVENTS} e
                  WHERE day BETWEEN $first AND $last AND {NOT_ERASED})
            SELECT end_day, COUNT(DISTINCT pseudonym) FROM ends
            JOIN e ON e.day > end_day - $window::INTEGER AND e.day <= end_day GROUP BY end_day""",
            {
                "ends": ends,
                "first": min(ends) - dt.timedelta(days=window_days - 1),
                "last": max(ends),
                "window": window_days,
            },
        )
        return {day: n for day, n in rows}

    def _count(
        self, dataset: str, epoch: str, first: dt.date, last: dt.date, by_day: bool
    ) -> list[tuple[dt.date | None, int]]:
        group = "day" if by_day else "NULL"
        return self._counted(
            dataset,
            epoch,
            f"""SELECT {group} AS day, COUNT(DISTINCT pseudonym) FROM {EVENTS} e
            WHERE day BETWEEN $first AND $last AND {NOT_ERASED} GROUP BY 1""",
            {"first": first, "last": last},
        )

    def _counted(self, dataset: str, epoch: str, sql: str, params: dict) -> list[tuple[Any, int]]:
        """(key, count) rows of a count over the epoch's live segments."""
        rows = self._over_segments(dataset, epoch, lambda con, p: con.execute(sql, p).fetchall(), params)
        return [(key, int(n)) for key, n in rows or []]

    def _over_segments(
        self,
        dataset: str,
        epoch: str,
        run: Callable[[duckdb.DuckDBPyConnection, dict], Any],
        params: dict,
    ) -> Any:
        """`run` (a query over `$files`, the epoch's live segments, with its erasures registered as
        `erased`), or None if the epoch holds no events; listed again if a segment was swept between
        listing and reading."""
        for attempt in range(3):
            files = self.segments.files(dataset, epoch)
            if not files:
                if self.keys.shredded(dataset, epoch):
                    raise ShreddedKey(f"the events of {dataset} under key {epoch} were deleted at retention")
                return None
            con = duck()
            try:
                con.register("erased", erased_frame(self.erased(dataset, epoch)))
                return run(con, {**params, "files": [str(f) for f in files]})
            except duckdb.IOException:
                if attempt == 2:
                    raise
            finally:
                con.close()
        return None

    def estimate(
        self, dataset: str, first: dt.date, last: dt.date, backend: Backend, k: int = 4096
    ) -> Estimate:
        """People active on any day of [first, last] by one distinct-count backend (internal: not a
        release, see `stores.distinct_estimates`). Sketches read one day's hashes at a time."""
        if backend == "exact":
            exact = float(self.distinct_users(dataset, first, last))
            return Estimate("exact", exact, exact, exact, int(exact))
        epoch = self.keys.calendar(dataset).counting(last).name
        sketch = new_sketch(backend, k)
        sql = f"""SELECT hash(pseudonym) AS h FROM {EVENTS} e
            WHERE day = $day AND {NOT_ERASED}"""

        def feed(con: duckdb.DuckDBPyConnection, params: dict) -> None:
            day = first
            while day <= last:
                hashes = con.execute(sql, {**params, "day": day}).fetchnumpy()["h"]
                sketch.update(np.asarray(hashes, dtype=np.uint64))
                day += dt.timedelta(days=1)

        self._over_segments(dataset, epoch, feed, {})
        return sketch.estimate()

    # ---- purging, recovery and retention ------------------------------------------------------

    def flush_deletes(self, dataset: str) -> Flushed:
        """Purge erased events from the stored segments; an epoch rewritten is merged into one segment
        without duplicate rows (a retried COPY's)."""
        epochs = purged = 0
        for epoch in self.segments.epochs(dataset):
            latest = self.erasures.latest(dataset, epoch)
            files = self.segments.files(dataset, epoch)
            if not self.segments.behind(dataset, epoch, latest) and len(files) <= COMPACT_AT:
                continue
            known = self.erasures.names(dataset, epoch)
            con = duck()
            try:
                con.register("erased", erased_frame([(p, ts) for p, ts, _ in known]))
                paths = [str(f) for f in files]
                before = con.execute(
                    "SELECT count(*) FROM read_parquet(?, union_by_name = true)", [paths]
                ).fetchone()
                temporary, final = self.segments.stage(dataset, epoch)
                kept = con.execute(
                    f"""COPY (SELECT DISTINCT * FROM read_parquet({path_list(paths)}, union_by_name = true) e
                        WHERE {NOT_ERASED}
                        ORDER BY day) TO '{quoted(temporary)}' (FORMAT parquet, COMPRESSION zstd)"""
                ).fetchone()
            finally:
                con.close()
            fsync_file(temporary)
            left = int(kept[0]) if kept else 0
            staged = Staged(epoch, temporary, final, left)
            with self.db.write() as tx:
                self.segments.replace(tx, dataset, epoch, files, staged if left else None, latest)
            if left:
                self.segments.publish([staged])
            else:
                temporary.unlink(missing_ok=True)
            epochs += 1
            purged += int(before[0] if before else 0) - left
        live = sum(len(self.segments.files(dataset, e)) for e in self.segments.epochs(dataset))
        self.segments.sweep(dataset)
        return Flushed(epochs, purged, live)

    def recover(self, dataset: str) -> dict[str, int]:
        """Before serving: complete the erasure ledger and the segment manifest from each other
        and the folder (after a crash or a restore), then purge whatever an erasure still covers."""
        replayed = self.erasures.reconcile(dataset, set(self.keys.live_epochs(dataset)))
        counts = self.segments.reconcile(dataset)
        flushed = self.flush_deletes(dataset)
        report = {**counts, "erasures_replayed": replayed, "purged": flushed.purged}
        if replayed or any(counts.values()):
            log.warning("activity dataset %s recovered: %s", dataset, report)
        return report

    def expire(self, dataset: str, retention_days: int, today: dt.date | None = None) -> list[str]:
        """Retention: delete the events and keys of epochs that ended `retention_days` ago."""
        today = today or dt.datetime.now(dt.UTC).date()
        shredded = self.keys.shred(dataset, today - dt.timedelta(days=retention_days))
        if shredded:
            with self.db.write() as tx:
                for epoch in shredded:
                    self.segments.retire_epoch(tx, dataset, epoch)
                    self.erasures.forget_epoch(tx, dataset, epoch)
            self.erasures.rewrite_journal(dataset, set(self.keys.live_epochs(dataset)))
            self.segments.sweep(dataset, dt.timedelta(0))
        return shredded

    def pending_erasures(self, dataset: str) -> int:
        """Epochs whose stored segments still hold events an erasure covers (flush-deletes purges them)."""
        return sum(
            1
            for epoch in self.segments.epochs(dataset)
            if self.segments.behind(dataset, epoch, self.erasures.latest(dataset, epoch))
        )

    def close(self) -> None:
        self.db.close()


def _frame(batch: Batch, domains: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    empty = np.full(len(batch), None, dtype=object)
    carried = {name: batch.segments.get(name, empty) for name in domains}
    return {"user_id": batch.user_id, "ts": batch.ts, "op": batch.op, "line": batch.line, **carried}


def _check_segments(con: duckdb.DuckDBPyConnection, domains: Mapping[str, Sequence[str]]) -> None:
    """The first row whose segment value is not one of its column's public values (BadEvent)."""
    for name, values in domains.items():
        row = con.execute(
            f'SELECT line, "{name}" FROM raw WHERE "{name}" IS NOT NULL '
            f'AND NOT list_contains($values, "{name}") ORDER BY line LIMIT 1',
            {"values": list(values)},
        ).fetchone()
        if row is not None:
            shown = ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
            raise BadEvent(int(row[0]), f"{name} {row[1]!r} is not one of its values ({shown})")


def _check(con: duckdb.DuckDBPyConnection, latest: dt.datetime) -> None:
    """The first bad row of the batch, as BadEvent with its line (nothing is written before this)."""
    row = con.execute(
        """SELECT line, user_id, ts, op, TRY_CAST(ts AS TIMESTAMPTZ) AT TIME ZONE 'UTC' FROM raw
        WHERE user_id IS NULL OR trim(user_id) = '' OR op IS NULL OR op NOT IN ('+', '-')
           OR TRY_CAST(ts AS TIMESTAMPTZ) IS NULL
           OR TRY_CAST(ts AS TIMESTAMPTZ) AT TIME ZONE 'UTC' > ?
        ORDER BY line LIMIT 1""",
        [latest],
    ).fetchone()
    if row is None:
        return
    line, user_id, ts, op, moment = row
    if user_id is None or not str(user_id).strip():
        reason = "user_id is empty"
    elif op is None or op not in ("+", "-"):
        reason = f"op must be + (active) or - (erase), not {op!r}"
    elif moment is None:
        reason = f"ts {ts!r} is not a date and time (e.g. 2025-10-01 08:00:00+00)"
    else:
        reason = f"ts {ts} is in the future (later than {latest:%Y-%m-%d %H:%M:%S} UTC)"
    raise BadEvent(int(line), reason)


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer keys (RFC 2104) for a 32-byte key and SHA-256's 64-byte blocks."""
    block = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


# HMAC-SHA256(key, user_id) in DuckDB: H(outer || H(inner || message)); equal to hmac.digest (tested).
_HMAC = "unhex(sha256($outer::BLOB || unhex(sha256($inner::BLOB || encode(ev.user_id)))))"
