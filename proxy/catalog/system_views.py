"""The `privacylens.*` system views: the ledger database and the policy, as SQL tables.

They live in the catalog engine (schema `privacylens`), which never holds data, and are refreshed
from the ledger database right before a query that reads them, so they are always current and cost
no budget. Times are UTC `timestamp`s. Who may read what (`readable`):

- admins and auditors: every view;
- analysts: `privacylens.budget` and `privacylens.datasets`, their own rows only; the others are
  refused with 42501.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from pgerrors import AccessDenied
from rewriter.policy import ActivityDataset, Policy
from rewriter.roles import AUDIT_ROLES
from stores.activity_releases import month_loss
from stores.audit import SCHEMA as AUDIT_SCHEMA
from stores.database import open_database
from stores.ledger import SCHEMA as LEDGER_SCHEMA
from stores.ledger import current_accounts
from stores.monitor import SCHEMA as MONITOR_SCHEMA

SCHEMA = "privacylens"
_TS, _TEXT, _BIG, _DBL, _BOOL, _INT = "TIMESTAMP", "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "INTEGER"

VIEWS: dict[str, tuple[tuple[str, str], ...]] = {
    "datasets": (("dataset", _TEXT), ("description", _TEXT), ("privacy_unit", _TEXT),
                 ("epsilon_per_user", _DBL), ("delta_per_user", _DBL), ("refresh_days", _INT),
                 ("mechanism", _TEXT), ("default_epsilon", _DBL), ("max_epsilon", _DBL),
                 ("min_group_size", _INT), ("columns", _INT), ("policy_version", _TEXT)),
    "budget": (("dataset", _TEXT), ("user_name", _TEXT), ("total", _DBL), ("spent", _DBL),
               ("remaining", _DBL), ("spent_ratio", _DBL), ("period_start", _TS), ("refreshes_at", _TS),
               ("answers", _BIG)),
    "ledger": (("id", _BIG), ("at", _TS), ("dataset", _TEXT), ("user_name", _TEXT), ("epsilon", _DBL),
               ("spent_after", _DBL), ("total", _DBL), ("period", _BIG), ("fingerprint", _TEXT)),
    "audit": (("id", _BIG), ("at", _TS), ("kind", _TEXT), ("user_name", _TEXT), ("dataset", _TEXT),
              ("detail", _TEXT), ("hash", _TEXT)),
    "queries": (("id", _BIG), ("at", _TS), ("dataset", _TEXT), ("user_name", _TEXT), ("statement", _TEXT),
                ("params", _TEXT), ("epsilon", _DBL), ("cached", _BOOL), ("withheld", _BOOL),
                ("released", _TEXT)),
    "alerts": (("id", _BIG), ("at", _TS), ("kind", _TEXT), ("dataset", _TEXT), ("users", _TEXT),
               ("across_accounts", _BOOL), ("action", _TEXT), ("active", _BOOL), ("until", _TS),
               ("queries", _INT), ("summary", _TEXT)),
    "attack_replay": (("alert_id", _BIG), ("step", _INT), ("heuristic", _TEXT), ("query_id", _BIG),
                      ("at", _TS), ("user_name", _TEXT), ("statement", _TEXT), ("params", _TEXT),
                      ("epsilon", _DBL), ("cached", _BOOL), ("withheld", _BOOL), ("released", _TEXT)),
}  # fmt: skip
ANALYST_VIEWS = frozenset({"budget", "datasets"})


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA {SCHEMA}")
    for name, columns in VIEWS.items():
        described = ", ".join(f'"{column}" {kind}' for column, kind in columns)
        con.execute(f"CREATE TABLE {SCHEMA}.{name} ({described})")


def readable(view: str, role: str, user: str) -> str | None:
    """The SQL to read `view` as (role, user): None for the whole table; refuses what the role may not."""
    if role in AUDIT_ROLES:
        return None
    if view in ANALYST_VIEWS:
        quoted = "'" + user.replace("'", "''") + "'"
        if view == "budget":  # their own accounts, and every activity dataset's monthly caps (shared)
            return f"SELECT * FROM {SCHEMA}.budget WHERE user_name = {quoted} OR user_name LIKE 'metric:%'"
        return f"SELECT * FROM {SCHEMA}.datasets"
    raise AccessDenied(
        f'role "{role}" may not read privacylens.{view}',
        hint="Analysts can read privacylens.budget and privacylens.datasets; "
        "the ledger, audit log and alerts are for auditors and admins.",
    )


class SystemViews:
    """Fills the `privacylens` tables of a catalog engine's DuckDB from the ledger database."""

    def __init__(self, con: duckdb.DuckDBPyConnection, ledger: str | Path, policy: Policy) -> None:
        self._con = con
        self._policy = policy
        self._lock = threading.Lock()
        self._db = open_database(ledger)
        self._db.create(LEDGER_SCHEMA + AUDIT_SCHEMA + MONITOR_SCHEMA)

    def refresh(self) -> None:
        """Replace every view's rows with the ledger database's current content."""
        with self._lock:
            now = time.time()
            rows = {
                "datasets": self._datasets(),
                "budget": self._budget(now),
                "ledger": self._ledger(),
                "audit": self._audit(),
                "queries": self._queries(),
                "alerts": self._alerts(now),
                "attack_replay": self._replay(),
            }
            cursor = self._con.cursor()
            try:
                cursor.execute("BEGIN")
                for name, content in rows.items():
                    _replace(cursor, name, content)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            finally:
                cursor.close()

    def _datasets(self) -> list[tuple]:
        return [
            (
                name,
                d.description,
                d.privacy_unit,
                d.budget.epsilon,
                d.budget.delta,
                d.budget.refresh_days,
                d.query.mechanism,
                d.query.default_epsilon,
                d.query.max_epsilon,
                d.suppression.min_group_size,
                len(d.columns),
                self._policy.version,
            )  # fmt: skip
            for name, d in sorted(self._policy.datasets.items())
        ] + [
            (
                name,
                a.description,
                "person (their whole activity trace)",
                a.dau.monthly_cap + a.mau.monthly_cap,  # a month's caps: an upper bound on its loss
                a.mau.delta,
                None,  # calendar months, not a day count
                _activity_mechanism(a),
                a.dau.epsilon,
                a.mau.epsilon,
                None,
                3 + len(a.segments),
                self._policy.version,
            )  # fmt: skip
            for name, a in sorted(self._policy.activities.items())
        ]

    def _budget(self, now: float) -> list[tuple]:
        out = []
        for account in current_accounts(self._db, self._policy, now):
            days = self._policy.datasets[account.dataset].budget.refresh_days
            start = _time((account.period - 1) * days * 86_400) if days else None
            end = _time(account.period * days * 86_400) if days else None
            out.append((account.dataset, account.user, account.total, account.spent, account.remaining,
                        account.spent / account.total, start, end, account.answers))  # fmt: skip
        return out + self._activity_budget()

    def _activity_budget(self) -> list[tuple]:
        """Activity datasets: one row per metric and calendar month with releases (user `metric:dau`)."""
        out = []
        for name, spec in sorted(self._policy.activities.items()):
            rows = self._db.query(
                "SELECT a.user_name, a.period, a.spent_micro, (SELECT count(*) FROM debits d WHERE "
                "d.dataset = a.dataset AND d.user_name = a.user_name AND d.period = a.period) "
                "FROM accounts a WHERE a.dataset = ? AND a.user_name LIKE 'metric:%' AND a.period > 0 "
                "ORDER BY a.period, a.user_name",
                (name,),
            )
            for user, period, spent_micro, answers in rows:
                cap = spec.dau.monthly_cap if user == "metric:dau" else spec.mau.monthly_cap
                year, month = divmod(int(period), 100)
                start = dt.datetime(year, month, 1)
                end = dt.datetime(year + month // 12, month % 12 + 1, 1)
                spent = int(spent_micro) / 1e6
                out.append((name, user, cap, spent, max(cap - spent, 0.0), spent / cap, start, end, answers))
            for period in sorted({int(r[1]) for r in rows}):
                # One person's loss in the month from both metrics, composed (resets included).
                year, month = divmod(period, 100)
                loss = month_loss(self._db, name, period, spec.mau.delta)
                both = spec.dau.monthly_cap + spec.mau.monthly_cap
                start, end = dt.datetime(year, month, 1), dt.datetime(year + month // 12, month % 12 + 1, 1)
                releases = sum(int(r[3]) for r in rows if int(r[1]) == period)
                left = max(both - loss, 0.0)
                out.append((name, "metric:combined", both, loss, left, loss / both, start, end, releases))
        return out

    def _ledger(self) -> list[tuple]:
        return [
            (i, _time(at), ds, user, cost / 1e6, after / 1e6, total / 1e6, period, fp)
            for i, at, ds, user, cost, after, total, period, fp in self._db.query(
                "SELECT id, at, dataset, user_name, cost_micro, spent_after_micro, total_micro, period, "
                "fingerprint FROM debits ORDER BY id"
            )
        ]

    def _audit(self) -> list[tuple]:
        return [
            (i, _time(at), *rest)
            for i, at, *rest in self._db.query(
                "SELECT id, at, kind, user_name, dataset, detail, hash FROM audit ORDER BY id"
            )
        ]

    def _queries(self) -> list[tuple]:
        return [
            (i, _time(at), ds, user, statement, params, eps, not fresh, bool(withheld), shown or None)
            for i, at, ds, user, statement, params, eps, fresh, withheld, shown in self._db.query(
                "SELECT id, at, dataset, user_name, statement, params, epsilon, fresh, withheld, shown "
                "FROM released ORDER BY id"
            )
        ]

    def _alerts(self, now: float) -> list[tuple]:
        return [
            (
                i,
                _time(at),
                kind,
                ds,
                ", ".join(json.loads(users)),
                len(json.loads(users)) > 1,
                action,
                action != "flag" and until > now and cleared is None,
                _time(until) if action != "flag" else None,
                len(json.loads(queries)),
                summary,
            )  # fmt: skip
            for i, at, kind, ds, users, action, until, queries, summary, cleared in self._db.query(
                "SELECT id, at, kind, dataset, users, action, until, queries, summary, cleared_at "
                "FROM alerts ORDER BY id"
            )
        ]

    def _replay(self) -> list[tuple]:
        out = []
        for alert_id, kind, queries in self._db.query("SELECT id, kind, queries FROM alerts ORDER BY id"):
            ids = json.loads(queries)
            marks = ", ".join("?" for _ in ids)
            found = {
                row[0]: row
                for row in self._db.query(
                    "SELECT id, at, user_name, statement, params, epsilon, fresh, withheld, shown "
                    f"FROM released WHERE id IN ({marks})",
                    ids,
                )
            }
            for step, query_id in enumerate(ids, start=1):
                if query_id in found:
                    _, at, user, statement, params, eps, fresh, withheld, shown = found[query_id]
                    out.append((alert_id, step, kind, query_id, _time(at), user, statement, params, eps,
                                not fresh, bool(withheld), shown or None))  # fmt: skip
        return out


def _replace(cursor: duckdb.DuckDBPyConnection, name: str, rows: Sequence[tuple]) -> None:
    """Swap a table's rows in one columnar INSERT (one list parameter per column)."""
    columns = VIEWS[name]
    cursor.execute(f"DELETE FROM {SCHEMA}.{name}")
    if not rows:
        return
    lists: list[list[Any]] = [[row[i] for row in rows] for i in range(len(columns))]
    select = ", ".join(f"unnest(?::{kind}[])" for _, kind in columns)
    cursor.execute(f"INSERT INTO {SCHEMA}.{name} SELECT {select}", lists)


def _time(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _activity_mechanism(spec: ActivityDataset) -> str:
    """How an activity dataset releases, in a few words (privacylens.datasets.mechanism)."""
    continual = spec.continual.metric if spec.continual else None
    dau = "tree" if continual == "dau" else "discrete_laplace"
    mau = "tree" if continual == "mau" else "discrete_gaussian"
    return f"activity: dau {dau}, mau {mau}" + (f" (by {', '.join(spec.segments)})" if spec.segments else "")
