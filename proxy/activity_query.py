"""Activity datasets over the wire and the CLI: ingest, erase, and release DAU / MAU.

`ActivityService` is the one path that touches activity events or spends their budget. A release
(`release_rows`) is, per day or window: pending (the day is not complete yet: NULL, free), re-served
(stored before: the same value, free), or fresh: the month's cap is checked before anything is
counted (53400), the exact distinct count is taken, noised, and charged and stored in one ledger
transaction (`stores.activity_releases`). Whatever the query does around the call (projections,
ORDER BY, arithmetic) runs afterwards on the released rows only, in an in-memory DuckDB without
file access: post-processing, free.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from answers.activity import Metric, Release, mechanism_of, release, segment_mechanism
from pgerrors import AccessDenied, BadCopyData, BudgetExhausted, InvalidParameterValue, UndefinedColumn
from privacy.accounting import NoiseEvent
from privacy.budget import PureDP
from proxy import metrics
from proxy.activity_continual import ContinualReleases
from proxy.results import Column, Description, Result, duckdb_columns
from rewriter.activity_call import COLUMNS, RELEASED, ActivityCall
from rewriter.policy import ActivityDataset, Policy
from rewriter.roles import INGEST_ROLES, READER_ROLES
from stores.activity import ActivityStore, Flushed, Ingested
from stores.activity_input import BadEvent, Batch, Format, read_batch
from stores.activity_releases import Releases, month_of
from stores.activity_tree import Trees
from stores.database import Database
from stores.epochs import Rotation
from stores.ledger import Terms
from stores.pseudonyms import ShreddedKey

log = logging.getLogger("privacylens.activity")

MAX_SERIES_DAYS = 400


class ActivityService:
    def __init__(self, policy: Policy, db: Database, folder: str | Path) -> None:
        self.policy = policy
        self.store = ActivityStore(db, folder)
        self.releases = Releases(db)
        self.trees = Trees(db, folder)
        self.continual = ContinualReleases(self.store, self.releases, self.trees)

    # ---- administration -----------------------------------------------------------------------

    def recover(self) -> None:
        """Before serving: replay erasures and reconcile segments after a crash or restore, then
        apply retention."""
        for name, spec in sorted(self.policy.activities.items()):
            self.store.recover(name)
            self.trees.purge(name, functools.partial(self.store.erased, name))
            self.store.expire(name, spec.retention_days)

    def maintain(self) -> None:
        """Periodic: purge erased events, merge small segments, apply retention."""
        for name, spec in sorted(self.policy.activities.items()):
            self.flush_deletes(name)
            self.store.expire(name, spec.retention_days)
            metrics.ACTIVITY_PENDING_ERASURES.labels(name).set(self.store.pending_erasures(name))

    def flush_deletes(self, dataset: str) -> Flushed:
        """Purge erased people from the stored events and from continual-release cap states."""
        flushed = self.store.flush_deletes(dataset)
        self.trees.purge(dataset, functools.partial(self.store.erased, dataset))
        return flushed

    def spec(self, dataset: str) -> ActivityDataset:
        spec = self.policy.activities.get(dataset)
        if spec is None:
            known = ", ".join(sorted(self.policy.activities)) or "none"
            raise AccessDenied(
                f'"{dataset}" is not an activity dataset', hint=f"Activity datasets in the policy: {known}."
            )
        return spec

    # ---- ingestion ----------------------------------------------------------------------------

    def ingest(self, dataset: str, batch: Batch, role: str, actor: str | None = None) -> Ingested:
        spec = self._writable(dataset, role)
        with _refusing_bad_rows():
            window, grace, domains = spec.mau.window_days, spec.grace(), _domains(spec)
            done = self.store.ingest(dataset, batch, window, future_grace=grace, actor=actor, domains=domains)
        metrics.ACTIVITY_EVENTS.labels(dataset).inc(done.events)
        metrics.ACTIVITY_ERASURES.labels(dataset).inc(done.erasures)
        return done

    def ingest_text(
        self,
        dataset: str,
        data: bytes | str,
        fmt: Format,
        columns: Sequence[str],
        header: bool,
        role: str,
        actor: str | None = None,
    ) -> Ingested:
        """COPY data or a file's text: read, checked and stored all or nothing."""
        self._writable(dataset, role)
        self.segment_columns(dataset, columns)
        with _refusing_bad_rows():
            batch = read_batch(data, fmt, columns, header)
        return self.ingest(dataset, batch, role, actor)

    def erase(self, dataset: str, user_id: str, role: str, actor: str | None = None) -> None:
        """An erasure request as of now: the person leaves every later release."""
        moment = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        self.ingest(dataset, Batch.of_rows([(user_id, moment, "-")]), role, actor)

    def rotate(
        self, dataset: str, effective: dt.date, actor: str, now: dt.datetime | None = None
    ) -> Rotation:
        """A new pseudonym key from `effective` (admin command; audited)."""
        spec = self.spec(dataset)
        try:
            return self.store.rotate(dataset, effective, spec.mau.window_days, actor, now, spec.grace())
        except ValueError as bad:
            raise InvalidParameterValue(
                str(bad),
                hint="Events up to now (plus the ingestion grace) may be stored already and keep their key; "
                "pick a later --effective day.",
            ) from None

    def segment_columns(self, dataset: str, columns: Sequence[str]) -> tuple[str, ...]:
        """The segment columns among a COPY's or INSERT's columns; 42703 for a column the dataset lacks."""
        spec = self.spec(dataset)
        unknown = [c for c in columns if c not in ("user_id", "ts", "op") and c not in spec.segments]
        if unknown:
            have = ", ".join(["user_id", "ts", "op", *spec.segments])
            raise UndefinedColumn(
                f'column "{unknown[0]}" of activity dataset {dataset} does not exist',
                hint=f"Its columns are {have}; segment columns are declared under segments: in the policy.",
            )
        return tuple(c for c in columns if c in spec.segments)

    def _writable(self, dataset: str, role: str) -> ActivityDataset:
        if role not in INGEST_ROLES:
            raise AccessDenied(
                f"only the ingest and admin roles may write to activity dataset {dataset}",
                hint="Analysts read it through privacylens.dau(...) and privacylens.mau(...).",
            )
        return self.spec(dataset)

    # ---- releases -----------------------------------------------------------------------------

    def describe(self, call: ActivityCall) -> Description:
        columns, _ = _post_process(call, [], run=False)
        return Description(call.parameter_types(), columns)  # type: ignore[arg-type]

    async def answer(self, call: ActivityCall, params: list[Any], user: str, role: str) -> Result:
        if role not in READER_ROLES:
            raise AccessDenied(
                f"role {role} may not read DAU or MAU releases", hint="Log in as an analyst or an admin."
            )
        dataset, first, last, window = call.bind(params)
        segment = call.segment(params)
        if segment is None:
            rows = await asyncio.to_thread(self.release_rows, dataset, call.metric, first, last, window, user)
        else:
            rows = await asyncio.to_thread(
                self.segment_rows, dataset, call.metric, segment, first, last, window, user
            )
        columns, out = _post_process(call, rows, run=True)
        return Result(columns, out, f"SELECT {len(out)}")

    def release_rows(
        self,
        dataset: str,
        metric: Metric,
        first: dt.date,
        last: dt.date,
        window: int | None,
        user: str,
        now: dt.datetime | None = None,
    ) -> list[tuple]:
        """One row per day of [first, last] (COLUMNS order); fresh releases are charged."""
        spec = self.spec(dataset)
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        continual = _continual(spec, metric)
        days, size, complete = self._series(dataset, spec, metric, first, last, window, now, continual)
        stored = self.releases.find(dataset, metric, [d for d in days if complete[d]], size)
        fresh = [d for d in days if complete[d] and d not in stored]
        kept = self._release(dataset, spec, metric, fresh, size, user, now) if fresh else {}
        rows = []
        for day in days:
            head: tuple = (day,) if metric == "dau" else (day, size)
            if not complete[day]:
                outcome, row = "pending", (*head, None, None, None, 0.0, 0.0, False, "pending")
            elif day in stored:
                outcome, row = "re-served", (*head, *_values(stored[day]), 0.0, 0.0, True, "re-served")
            else:
                release, new = kept[day]
                outcome = "released" if new else "re-served"
                charged = (release.epsilon, release.delta) if new else (0.0, 0.0)
                row = (*head, *_values(release), *charged, not new, outcome)
            metrics.ACTIVITY_RELEASES.labels(dataset, metric, outcome).inc()
            rows.append(row)
        return rows

    def segment_rows(
        self,
        dataset: str,
        metric: Metric,
        segment: str,
        first: dt.date,
        last: dt.date,
        window: int | None,
        user: str,
        now: dt.datetime | None = None,
    ) -> list[tuple]:
        """One row per day and segment value (COLUMNS order of dau_by / mau_by): each day's values
        are released together, charged once, and re-served together."""
        spec = self.spec(dataset)
        setting = spec.segments.get(segment)
        if setting is None:
            have = ", ".join(spec.segments) or "none"
            raise UndefinedColumn(
                f'activity dataset {dataset} has no segment column "{segment}"',
                hint=f"Its segment columns (segments: in the policy): {have}.",
            )
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        days, size, complete = self._series(dataset, spec, metric, first, last, window, now, False)
        ready = [d for d in days if complete[d]]
        stored = self.releases.find_vectors(dataset, metric, segment, ready, size)
        fresh = [d for d in ready if d not in stored]
        kept = self._release_vectors(dataset, spec, metric, segment, fresh, size, user, now) if fresh else {}
        rows = []
        for day in days:
            head: tuple = (day,) if metric == "dau" else (day, size)
            if not complete[day]:
                vector, new, outcome = [], False, "pending"
            elif day in stored:
                vector, new, outcome = stored[day], False, "re-served"
            else:
                vector, new = kept[day]
                outcome = "released" if new else "re-served"
            by_value = dict(vector)
            for value in setting.values:
                r = by_value.get(value)
                if r is None:  # pending, or a value added to the policy after this day was released
                    rows.append((*head, value, None, None, None, 0.0, 0.0, False, outcome))
                    continue
                charged = (r.epsilon, r.delta if r.epsilon else 0.0) if new else (0.0, 0.0)
                rows.append((*head, value, *_values(r), *charged, not new, outcome))
            metrics.ACTIVITY_RELEASES.labels(dataset, metric, outcome).inc()
        return rows

    def _release_vectors(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        segment: str,
        days: list[dt.date],
        size: int,
        user: str,
        now: dt.datetime,
    ) -> dict[dt.date, tuple[list[tuple[str, Release]], bool]]:
        """Fresh releases by segment: caps checked for every day first, one count query per epoch,
        then each day's vector charged once and stored, all in one ledger transaction."""
        _check_retention(spec, days, size, now)
        per_person = spec.segments[segment].per_person
        noise, event = segment_mechanism(metric, spec, per_person)
        self._check_caps(dataset, spec, metric, days, event)
        with _retained():
            counts = self.store.segment_users(dataset, segment, per_person, days, size)
        vectors = {
            day: [
                (value, release(metric, spec, day, size, counts[day].get(value, 0), noise))
                for value in spec.segments[segment].values
            ]
            for day in days
        }
        try:
            kept = self.releases.keep_vectors(
                dataset, metric, segment, vectors, event, functools.partial(self._terms, spec, metric), user
            )
        except BudgetExhausted:
            raise self._cap_refusal(dataset, spec, metric, days[0], len(days)) from None
        for vector, new in kept.values():
            if new:
                metrics.ACTIVITY_EPSILON.labels(dataset, metric).inc(vector[0][1].epsilon)
        return kept

    def _series(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        first: dt.date,
        last: dt.date,
        window: int | None,
        now: dt.datetime,
        continual: bool,
    ) -> tuple[list[dt.date], int, dict[dt.date, bool]]:
        """The days of a request, its window size, and which days are complete (else pending)."""
        window = window or spec.mau.window_days
        if last < first:
            raise InvalidParameterValue(f"the last day {last} is before the first {first}")
        if (last - first).days >= MAX_SERIES_DAYS:
            raise InvalidParameterValue(f"a series may cover at most {MAX_SERIES_DAYS} days")
        if metric == "mau" and continual and window != spec.mau.window_days:
            raise InvalidParameterValue(
                f"MAU of {dataset} is released as one continual series of {spec.mau.window_days}-day windows",
                hint=f"Ask for privacylens.mau('{dataset}', <day>, {spec.mau.window_days}) "
                "or leave the window out.",
            )
        if metric == "mau" and not 1 <= window <= spec.mau.window_days:
            raise InvalidParameterValue(
                f"MAU windows of {dataset} are 1 to {spec.mau.window_days} days, not {window}",
                hint=f"The policy's mau.window_days ({spec.mau.window_days}) is the longest window.",
            )
        days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
        complete = {
            d: now >= dt.datetime.combine(d + dt.timedelta(days=1), dt.time()) + spec.lag() for d in days
        }
        return days, 1 if metric == "dau" else window, complete

    def _check_caps(
        self, dataset: str, spec: ActivityDataset, metric: Metric, days: list[dt.date], event: NoiseEvent
    ) -> None:
        """53400 before anything is counted if a month's cap cannot pay for its fresh releases."""
        nominal = spec.dau.epsilon if metric == "dau" else spec.mau.epsilon
        by_month: dict[int, list[dt.date]] = {}
        for day in days:
            by_month.setdefault(month_of(day), []).append(day)
        for month_days in by_month.values():
            terms = self._terms(spec, metric, month_days[0])
            try:
                self.releases.check(dataset, metric, len(month_days), event, nominal, terms)
            except BudgetExhausted:
                raise self._cap_refusal(dataset, spec, metric, month_days[0], len(month_days)) from None

    def _release(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        days: list[dt.date],
        size: int,
        user: str,
        now: dt.datetime,
    ) -> dict[dt.date, tuple[Release, bool]]:
        """Fresh releases of these days: caps checked for all of them before anything is counted,
        then one count per month, then charged and stored in one ledger transaction."""
        _check_retention(spec, days, size, now)
        if _continual(spec, metric):
            return self._continual_release(dataset, spec, metric, days, size, user)
        _, event = mechanism_of(metric, spec)
        self._check_caps(dataset, spec, metric, days, event)
        with _retained():
            if metric == "dau":
                counts = self.store.daily_users(dataset, min(days), max(days))
            else:
                counts = self.store.window_users(dataset, days, size)
        noised = [release(metric, spec, day, size, counts.get(day, 0)) for day in days]
        terms_of = functools.partial(self._terms, spec, metric)
        try:
            kept = self.releases.keep(dataset, noised, event, terms_of, user)
        except BudgetExhausted:  # another process spent the cap between the check and now
            raise self._cap_refusal(dataset, spec, metric, days[0], len(days)) from None
        for stored, new in kept:
            if new:
                metrics.ACTIVITY_EPSILON.labels(dataset, metric).inc(stored.epsilon)
        return {day: pair for day, pair in zip(days, kept, strict=True)}

    def _continual_release(
        self, dataset: str, spec: ActivityDataset, metric: Metric, days: list[dt.date], size: int, user: str
    ) -> dict[dt.date, tuple[Release, bool]]:
        """Fresh days of a continual series: each epoch's tree charged once, on its first release."""
        terms_of = functools.partial(self._terms, spec, metric)
        try:
            self.continual.check(dataset, spec, metric, days, terms_of)
            kept = self.continual.release(dataset, spec, metric, days, size, terms_of, user)
        except BudgetExhausted:
            raise self._cap_refusal(dataset, spec, metric, days[0], 1) from None
        for stored, new in kept.values():
            if new and stored.epsilon:
                metrics.ACTIVITY_EPSILON.labels(dataset, metric).inc(stored.epsilon)
        return kept

    def _terms(self, spec: ActivityDataset, metric: Metric, day: dt.date) -> Terms:
        month = month_of(day)
        cap = spec.dau.monthly_cap if metric == "dau" else spec.mau.monthly_cap
        delta = None if metric == "dau" else spec.mau.delta
        if _continual(spec, metric) and spec.continual is not None:
            delta = spec.continual.delta
        return Terms(PureDP.total(cap), delta, month, f"on the first day of the month after {day:%Y-%m}")

    def _cap_refusal(
        self, dataset: str, spec: ActivityDataset, metric: Metric, day: dt.date, releases: int
    ) -> BudgetExhausted:
        cap = spec.dau.monthly_cap if metric == "dau" else spec.mau.monthly_cap
        spent = self.releases.spent(dataset, metric, month_of(day))
        asked = "one more release" if releases == 1 else f"{releases} more releases"
        return BudgetExhausted(
            f"the {metric.upper()} budget of {dataset} for {day:%Y-%m} is spent: ε {spent:.4g} of the "
            f"monthly cap {cap:g} is used and {asked} would pass it",
            hint="Days and windows released already are re-served for free; ask for fewer new days. Each "
            "calendar month has its own cap; an admin can raise it in the policy (more privacy loss).",
        )


def _check_retention(spec: ActivityDataset, days: list[dt.date], size: int, now: dt.datetime) -> None:
    """Refuse a day whose window reaches back before the events retention kept."""
    oldest = now.date() - dt.timedelta(days=spec.retention_days)
    horizon = dt.date(oldest.year, oldest.month, 1)
    for day in days:
        if day - dt.timedelta(days=size - 1) < horizon:
            raise InvalidParameterValue(
                f"the events of {day - dt.timedelta(days=size - 1)} were deleted at retention "
                f"({spec.retention_days} days) and {day} was never released",
                hint="Days released before retention are still re-served.",
            )


def _domains(spec: ActivityDataset) -> dict[str, tuple[str, ...]]:
    return {name: segment.values for name, segment in spec.segments.items()}


def _continual(spec: ActivityDataset, metric: Metric) -> bool:
    return spec.continual is not None and spec.continual.metric == metric


def _values(stored: Release) -> tuple[int, int, int]:
    return round(stored.value), round(stored.ci_low), round(stored.ci_high)


_DUCK_TYPES = {
    "date": "DATE",
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "text": "VARCHAR",
}


def _post_engine(function: str, rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding only the released rows, with no file or network access."""
    con = duckdb.connect(config={"enable_external_access": False, "temp_directory": "", "threads": 1})
    columns = ", ".join(f"{name} {_DUCK_TYPES[t]}" for name, t in COLUMNS[function])
    con.execute(f"CREATE TABLE {RELEASED} ({columns})")
    if rows:
        marks = ", ".join("?" for _ in COLUMNS[function])
        con.executemany(f"INSERT INTO {RELEASED} VALUES ({marks})", rows)
    return con


def _post_process(call: ActivityCall, rows: list[tuple], run: bool) -> tuple[list[Column], list[tuple]]:
    """The query around the call, over the released rows only: its columns and (if `run`) rows."""
    con = _post_engine(call.function, rows)
    sql = call.post.sql(dialect="duckdb")
    try:
        described = con.execute(f"DESCRIBE {sql}").fetchall()
        out = con.execute(sql).fetchall() if run else []
    except duckdb.Error as err:
        raise InvalidParameterValue(f"cannot post-process the released rows: {_first_line(err)}") from None
    finally:
        con.close()
    return duckdb_columns([(str(r[0]), str(r[1])) for r in described]), out


@contextmanager
def _retained() -> Iterator[None]:
    """A count that needs events retention deleted refuses (22023) rather than counting 0."""
    try:
        yield
    except ShreddedKey as gone:
        raise InvalidParameterValue(
            f"{gone}; days not released before then can no longer be",
            hint="Days released before retention are still re-served.",
        ) from None


@contextmanager
def _refusing_bad_rows() -> Iterator[None]:
    """A row that is not an event refuses the whole statement (22P04), naming its line."""
    try:
        yield
    except BadEvent as bad:
        raise BadCopyData(
            f"{bad}; nothing of this statement was stored",
            hint="Rows are user_id, ts (e.g. 2025-10-01 08:00:00+00) and op (+ active, - erase).",
        ) from None
    except UnicodeDecodeError:
        raise BadCopyData("the data is not UTF-8; nothing of this statement was stored") from None


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
