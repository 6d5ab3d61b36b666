"""Released DAU and MAU values: charged and stored in one ledger transaction, then re-served.

A release is keyed by (dataset, metric, day, window). It is computed once: the debit of the monthly
cap account (`accounts` user `metric:dau` or `metric:mau`, period YYYYMM of the released day), the
stored value and its audit row commit together, so a released value always has its debit and a
debit always has its value. Whoever commits first wins; a concurrent second computation is thrown
away uncharged and the stored value returned instead. Values are never recomputed, so an erasure
changes only releases made after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from answers.activity import Metric, Release
from privacy import accounting
from privacy.accounting import NoiseEvent
from privacy.budget import PureDP
from stores import audit
from stores import ledger as accounts
from stores.database import Database, Tx
from stores.ledger import Terms

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_releases (
    dataset TEXT NOT NULL,
    metric TEXT NOT NULL,
    day TEXT NOT NULL,
    window_days BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    ci_low DOUBLE PRECISION NOT NULL,
    ci_high DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    epsilon DOUBLE PRECISION NOT NULL,
    delta DOUBLE PRECISION NOT NULL,
    mechanism TEXT NOT NULL,
    scale DOUBLE PRECISION NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (dataset, metric, day, window_days)
);
CREATE TABLE IF NOT EXISTS activity_segment_releases (
    dataset TEXT NOT NULL,
    metric TEXT NOT NULL,
    day TEXT NOT NULL,
    window_days BIGINT NOT NULL,
    segment TEXT NOT NULL,
    segment_value TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    ci_low DOUBLE PRECISION NOT NULL,
    ci_high DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    epsilon DOUBLE PRECISION NOT NULL,
    delta DOUBLE PRECISION NOT NULL,
    mechanism TEXT NOT NULL,
    scale DOUBLE PRECISION NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (dataset, metric, day, window_days, segment, segment_value)
);
"""

Vector = list[tuple[str, Release]]  # (segment value, its release), in the policy's value order


def account(metric: Metric) -> str:
    """The ledger account of a metric's monthly cap (not a user name: users cannot contain ':')."""
    return f"metric:{metric}"


def month_of(day: dt.date) -> int:
    """The budget period of a released day: its calendar month as YYYYMM."""
    return day.year * 100 + day.month


class Releases:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.db.create(accounts.SCHEMA + audit.SCHEMA + SCHEMA)  # the debits it writes are the ledger's

    def find(
        self, dataset: str, metric: Metric, days: Sequence[dt.date], window_days: int
    ) -> dict[dt.date, Release]:
        """The stored releases among these days (one read)."""
        with self.db.read() as tx:
            found = {day: _find(tx, dataset, metric, day, window_days) for day in days}
        return {day: r for day, r in found.items() if r is not None}

    def check(
        self, dataset: str, metric: Metric, releases: int, event: NoiseEvent, epsilon: float, terms: Terms
    ) -> None:
        """Refuse (BudgetExhausted) `releases` new releases of one month that its cap cannot pay for
        (pure: ε each; (ε, δ): `event` each, composed), before anything is counted."""
        with self.db.read() as tx:
            if terms.delta is None:
                price = PureDP(PureDP.from_epsilon(epsilon).micro * releases)
                accounts.pure_headroom(tx, dataset, account(metric), price, terms)
            else:
                accounts.composed_cost(tx, dataset, account(metric), [event] * releases, terms)

    def keep(
        self,
        dataset: str,
        releases: Sequence[Release],
        event: NoiseEvent,
        terms_of: Callable[[dt.date], Terms],
        user: str,
    ) -> list[tuple[Release, bool]]:
        """Charge and store releases in one transaction: each (what is stored, whether it is this one:
        a release another process stored first is returned instead, and this one is not charged)."""
        out = []
        with self.db.write() as tx:
            for release in releases:
                stored = _find(tx, dataset, release.metric, release.day, release.window_days)
                if stored is not None:
                    out.append((stored, False))
                    continue
                out.append((_keep(tx, dataset, release, event, terms_of(release.day), user), True))
        return out

    def store(self, tx: Tx, dataset: str, release: Release, user: str) -> tuple[Release, bool]:
        """Store a release whose charge the caller made (a continual-release tree's) in its
        transaction; one stored first is returned instead."""
        stored = _find(tx, dataset, release.metric, release.day, release.window_days)
        if stored is not None:
            return stored, False
        return _keep(tx, dataset, release, None, None, user), True

    def find_vectors(
        self, dataset: str, metric: Metric, segment: str, days: Sequence[dt.date], window_days: int
    ) -> dict[dt.date, Vector]:
        """The stored releases by segment among these days: each day's whole vector."""
        with self.db.read() as tx:
            found = {day: _find_vector(tx, dataset, metric, segment, day, window_days) for day in days}
        return {day: v for day, v in found.items() if v}

    def keep_vectors(
        self,
        dataset: str,
        metric: Metric,
        segment: str,
        vectors: dict[dt.date, Vector],
        event: NoiseEvent,
        terms_of: Callable[[dt.date], Terms],
        user: str,
    ) -> dict[dt.date, tuple[Vector, bool]]:
        """Charge each day's vector once (`event`: all its values together) and store it, all in
        one transaction; a vector another process stored first is returned instead, uncharged."""
        out: dict[dt.date, tuple[Vector, bool]] = {}
        with self.db.write() as tx:
            for day, vector in vectors.items():
                stored = _find_vector(tx, dataset, metric, segment, day, vector[0][1].window_days)
                if stored:
                    out[day] = (stored, False)
                    continue
                first = vector[0][1]
                fingerprint = f"{dataset}:{metric}:{day}:{first.window_days}:{segment}"
                charged = _debit(tx, dataset, metric, first.epsilon, event, terms_of(day), fingerprint)
                kept = []
                for k, (value, release) in enumerate(vector):
                    paid = Release(**{**release.__dict__, "epsilon": charged if k == 0 else 0.0})
                    tx.execute(
                        "INSERT INTO activity_segment_releases (dataset, metric, day, window_days, "
                        "segment, segment_value, value, ci_low, ci_high, confidence, epsilon, delta, "
                        "mechanism, scale, released_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (dataset, metric, day.isoformat(), paid.window_days, segment, value, paid.value,
                         paid.ci_low, paid.ci_high, paid.confidence, paid.epsilon, paid.delta, paid.mechanism,
                         paid.scale, paid.released_at),
                    )  # fmt: skip
                    kept.append((value, paid))
                detail = {"metric": metric, "day": day.isoformat(), "segment": segment, "epsilon": charged}
                audit.append(tx, "activity released", user, dataset, detail)
                out[day] = (kept, True)
        return out

    def spent(self, dataset: str, metric: Metric, month: int) -> float:
        with self.db.read() as tx:
            row = tx.one(
                "SELECT spent_micro FROM accounts WHERE dataset = ? AND user_name = ? AND period = ?",
                (dataset, account(metric), month),
            )
        return int(row[0]) / 1_000_000 if row else 0.0

    def reset(self, dataset: str, metric: Metric, month: int, actor: str) -> float:
        """Forget what the month's cap has spent (more privacy loss: see docs/activity.md); audited."""
        with self.db.write() as tx:
            row = tx.one(
                "SELECT spent_micro FROM accounts WHERE dataset = ? AND user_name = ? AND period = ?",
                (dataset, account(metric), month),
            )
            spent = int(row[0]) / 1_000_000 if row else 0.0
            tx.execute(
                "UPDATE accounts SET spent_micro = 0 WHERE dataset = ? AND user_name = ? AND period = ?",
                (dataset, account(metric), month),
            )
            # The debits stay (auditors read them) but leave the month's composition: period -YYYYMM.
            tx.execute(
                "UPDATE debits SET period = -period WHERE dataset = ? AND user_name = ? AND period = ?",
                (dataset, account(metric), month),
            )
            audit.append(
                tx,
                "activity budget reset",
                actor,
                dataset,
                {"metric": metric, "month": month, "spent": spent},
            )
        return spent


def _keep(
    tx: Tx, dataset: str, release: Release, event: NoiseEvent | None, terms: Terms | None, user: str
) -> Release:
    """Store a release, debiting `event` under `terms` first (None: charged by the caller)."""
    fingerprint = f"{dataset}:{release.metric}:{release.day}:{release.window_days}"
    charged = release.epsilon
    if event is not None and terms is not None:
        charged = _debit(tx, dataset, release.metric, release.epsilon, event, terms, fingerprint)
    kept = Release(**{**release.__dict__, "epsilon": charged})
    tx.execute(
        "INSERT INTO activity_releases (dataset, metric, day, window_days, value, ci_low, ci_high, "
        "confidence, epsilon, delta, mechanism, scale, released_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (dataset, kept.metric, kept.day.isoformat(), kept.window_days, kept.value, kept.ci_low, kept.ci_high,
         kept.confidence, kept.epsilon, kept.delta, kept.mechanism, kept.scale, kept.released_at),
    )  # fmt: skip
    detail = {
        "metric": kept.metric,
        "day": kept.day.isoformat(),
        "window_days": kept.window_days,
        "epsilon": charged,
    }
    audit.append(tx, "activity released", user, dataset, detail)
    return kept


def _find(tx: Tx, dataset: str, metric: Metric, day: dt.date, window_days: int) -> Release | None:
    row = tx.one(
        "SELECT metric, day, window_days, value, ci_low, ci_high, confidence, epsilon, delta, mechanism, "
        "scale, released_at FROM activity_releases "
        "WHERE dataset = ? AND metric = ? AND day = ? AND window_days = ?",
        (dataset, metric, day.isoformat(), window_days),
    )
    if row is None:
        return None
    return Release(
        row[0],
        dt.date.fromisoformat(row[1]),
        int(row[2]),
        *(float(v) for v in row[3:9]),
        str(row[9]),
        float(row[10]),
        str(row[11]),
    )


def month_loss(db: Database, dataset: str, month: int, delta: float) -> float:
    """What one person lost in a month (YYYYMM) through DAU and MAU together: every noise event of
    both accounts, reset ones included (a reset forgets spending, not loss), composed by the
    accountant at `delta`."""
    with db.read() as tx:
        events = [
            e
            for who in (account("dau"), account("mau"))
            for period in (month, -month)
            for e in accounts.events_spent(tx, dataset, who, period)
        ]
    return accounting.epsilon_of(events, delta) if events else 0.0


def _debit(
    tx: Tx, dataset: str, metric: Metric, epsilon: float, event: NoiseEvent, terms: Terms, fingerprint: str
) -> float:
    """Debit one release (pure: its ε; (ε, δ): its event, composed) from the metric's monthly cap;
    returns the ε charged."""
    if terms.delta is None:
        accounts.debit_pure(
            tx, dataset, account(metric), PureDP.from_epsilon(epsilon), terms, fingerprint, None, [event]
        )
        return epsilon
    _, cost = accounts.debit_composed(tx, dataset, account(metric), [event], terms, fingerprint, None)
    return cost.epsilon


def _find_vector(
    tx: Tx, dataset: str, metric: Metric, segment: str, day: dt.date, window_days: int
) -> Vector:
    rows = tx.execute(
        "SELECT segment_value, value, ci_low, ci_high, confidence, epsilon, delta, mechanism, scale, "
        "released_at FROM activity_segment_releases WHERE dataset = ? AND metric = ? AND day = ? "
        "AND window_days = ? AND segment = ? ORDER BY segment_value",
        (dataset, metric, day.isoformat(), window_days, segment),
    )
    return [
        (str(r[0]), Release(metric, day, window_days, *map(float, r[1:7]), str(r[7]), float(r[8]), str(r[9])))
        for r in rows
    ]
