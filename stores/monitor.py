"""Released answers, attack alerts and what they hold back: tables in the ledger database.

Every answer the gateway releases (fresh or re-served) is recorded in `released` with the statement,
its parameters, its ε, the normalised question and what the analyst received. `observe` records one
and runs the detectors (privacy.detectors) over the dataset's recent history in the same
`BEGIN IMMEDIATE` transaction, so concurrent queries cannot both miss an attack. Each new finding
becomes an `alerts` row carrying the policy's action for its heuristic:

- flag: the alert only;
- throttle: the accounts involved wait `throttle_seconds` before each query on the dataset;
- refuse: the answer that raised the alert is withheld (its charge stands) and the accounts'
  further queries on the dataset are refused.

Throttles and refusals last `hold_seconds`, or until an admin clears the alert
(`privacylens clear-alert`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from answers.detectors import Finding, History, Release, find
from rewriter.policy import Detectors
from rewriter.question import Question
from stores.database import Database, Tx, as_database
from stores.deferred import DeferredWrites

SCHEMA = """
CREATE TABLE IF NOT EXISTS released (
    id {serial},
    at DOUBLE PRECISION NOT NULL,
    dataset TEXT NOT NULL,
    user_name TEXT NOT NULL,
    statement TEXT NOT NULL,
    params TEXT NOT NULL,
    epsilon DOUBLE PRECISION NOT NULL,
    fresh INTEGER NOT NULL,
    question TEXT NOT NULL,
    sizes TEXT NOT NULL,
    size_sd DOUBLE PRECISION NOT NULL,
    shown TEXT NOT NULL,  -- the rows the analyst received (JSON); '' when withheld
    withheld INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS released_by_dataset ON released (dataset, id);
CREATE TABLE IF NOT EXISTS alerts (
    id {serial},
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    dataset TEXT NOT NULL,
    users TEXT NOT NULL,  -- JSON list
    action TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    summary TEXT NOT NULL,
    queries TEXT NOT NULL,  -- JSON list of released ids, oldest first
    signature TEXT NOT NULL,
    cleared_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS alerts_by_signature ON alerts (signature, at);
"""
HISTORY_LIMIT = 2000  # the detectors look at most this many recent fresh answers per dataset


@dataclass(frozen=True)
class Alert:
    id: int
    kind: str
    action: str
    until: float
    summary: str


@dataclass(frozen=True)
class Observation:
    release_id: int
    alerts: list[tuple[Alert, Finding]]

    @property
    def withheld_by(self) -> Alert | None:
        return next((alert for alert, _ in self.alerts if alert.action == "refuse"), None)


class Monitor:
    def __init__(self, location: str | Path | Database) -> None:
        # NORMAL: the history is defence in depth; the budget's durability is the ledger's (FULL).
        self.db = as_database(location, "NORMAL")
        self.db.create(SCHEMA)
        self._lock = threading.Lock()  # guards the parsed history
        self._known: dict[str, History] = {}  # parsed, indexed history per dataset (see _history)
        self.deferred = DeferredWrites(self.db)  # re-served answers' rows

    def close(self) -> None:
        self.deferred.close()
        self.db.close()

    def holds(self, dataset: str, user: str, now: float | None = None) -> list[Alert]:
        """Active throttles and refusals on this user's queries on this dataset, refusals first."""
        now = time.time() if now is None else now
        rows = self.db.query(
            "SELECT id, kind, action, until, summary, users FROM alerts WHERE dataset = ? "
            "AND action IN ('throttle', 'refuse') AND until > ? AND cleared_at IS NULL "
            "ORDER BY action = 'refuse' DESC, id",
            (dataset, now),
        )
        return [Alert(*row[:5]) for row in rows if user in json.loads(row[5])]

    def observe(
        self,
        dataset: str,
        user: str,
        statement: str,
        params: Sequence[Any],
        epsilon: float,
        fresh: bool,
        question: Question,
        sizes: Sequence[float | None],
        size_sd: float,
        shown: Sequence[Sequence[Any]],
        config: Detectors,
        unit_column: str = "",
    ) -> Observation:
        """Record a released answer and raise the alerts it completes, atomically. A re-served
        answer raises nothing: its row is written with the next batch (stores.deferred)."""
        now = time.time()
        row = (now, dataset, user, statement, _json(params), epsilon, int(fresh), question.to_json(),
               _json(sizes), size_sd, _json(shown))  # fmt: skip
        if not fresh:
            self.deferred.add(lambda tx: _insert(tx, row))
            return Observation(0, [])

        def write(tx: Tx) -> Observation:
            release_id = _insert(tx, row)
            new = Release(release_id, now, user, question, tuple(sizes), size_sd, fresh)
            alerts = []
            history = self._history(tx, dataset, now - config.window_hours * 3600)
            for finding in find(new, history, config, unit_column):
                alert = self._raise(tx, dataset, finding, now, config)
                if alert is not None:
                    alerts.append((alert, finding))
            if any(alert.action == "refuse" for alert, _ in alerts):
                tx.execute("UPDATE released SET withheld = 1, shown = '' WHERE id = ?", (release_id,))
            return Observation(release_id, alerts)

        try:
            with self._lock:
                observation = self.deferred.flush(write)
        except BaseException:
            self._known.pop(dataset, None)  # it may hold the rolled-back row, whose id can come again
            raise
        assert observation is not None
        return observation

    def clear(self, alert_id: int) -> bool:
        """Lift an alert's throttle or refusal now (the alert stays on record)."""
        with self.db.write() as tx:
            tx.execute(
                "UPDATE alerts SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL",
                (time.time(), alert_id),
            )
            return tx.rowcount == 1

    def _history(self, tx: Tx, dataset: str, since: float) -> History:
        """The dataset's fresh answers since `since` (at most HISTORY_LIMIT), indexed for the detectors.

        Parsed rows are kept between calls; each call reads only rows added since (by this process
        or any other sharing the ledger), so the cost does not grow with the history.
        """
        known = self._known.setdefault(dataset, History())
        last = known.releases[-1].id if known.releases else 0
        rows = tx.execute(
            "SELECT id, at, user_name, question, sizes, size_sd FROM released "
            "WHERE dataset = ? AND fresh = 1 AND id > ? AND at >= ? ORDER BY id DESC LIMIT ?",
            (dataset, last, since, HISTORY_LIMIT),
        )
        for row in reversed(rows):
            question = Question.from_json(row[3])
            known.add(Release(row[0], row[1], row[2], question, tuple(json.loads(row[4])), row[5], True))
        known.keep(since, HISTORY_LIMIT)
        return known

    def _raise(self, tx: Tx, dataset: str, finding: Finding, now: float, config: Detectors) -> Alert | None:
        """Store a finding as an alert, unless it continues one raised since its first query."""
        first = tx.one("SELECT at FROM released WHERE id = ?", (finding.queries[0],))
        assert first is not None
        if tx.one("SELECT 1 FROM alerts WHERE signature = ? AND at >= ?", (finding.signature, first[0])):
            return None
        action = getattr(config, finding.kind).action
        until = now + config.hold_seconds if action != "flag" else now
        (alert_id,) = tx.execute(
            "INSERT INTO alerts (at, kind, dataset, users, action, until, summary, queries, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                now,
                finding.kind,
                dataset,
                _json(finding.users),
                action,
                until,
                finding.summary,
                _json(finding.queries),
                finding.signature,
            ),  # fmt: skip
        )[0]
        return Alert(alert_id, finding.kind, action, until, finding.summary)


def _insert(tx: Tx, row: tuple[Any, ...]) -> int:
    (release_id,) = tx.execute(
        "INSERT INTO released (at, dataset, user_name, statement, params, epsilon, fresh, "
        "question, sizes, size_sd, shown) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        row,
    )[0]
    return int(release_id)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))
