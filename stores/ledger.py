"""The durable privacy ledger: SQLite in WAL mode, one debit per released answer, and the answers.

`debit` runs in a single `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock, reads what the
(dataset, user) account has spent, refuses if the cost would pass the total, and otherwise records
the debit and the new balance before committing with `synchronous=FULL`. Because the write lock is
held from read to commit, concurrent debits, from threads or from other processes sharing the file,
are serialised and can never overspend; a crash before COMMIT leaves no trace and after COMMIT the
debit is on disk. The caller releases an answer only after `debit` returns. A fresh answer's debit,
its audit row and the stored answer commit in one transaction (`Ledger.charge_and_keep`).

Stored answers never change (their keys hold the policy and data versions), so the most recent ones
are also kept in memory (`stores.answer_memory`): a re-served answer is found without a read.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pgerrors import BudgetExhausted
from privacy import accounting
from privacy.accounting import NoiseEvent
from privacy.budget import PureDP
from rewriter.policy import Budget, Policy
from rewriter.roles import READER_ROLES
from stores import audit
from stores.answer_memory import AnswerMemory
from stores.database import Database, Tx, as_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    dataset TEXT NOT NULL,
    user_name TEXT NOT NULL,
    period BIGINT NOT NULL DEFAULT 0,  -- budget period: 0 when budgets never refresh
    spent_micro BIGINT NOT NULL CHECK (spent_micro >= 0),
    PRIMARY KEY (dataset, user_name, period)
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    dataset TEXT NOT NULL,
    user_name TEXT NOT NULL,
    answer TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS debits (
    id {serial},
    at DOUBLE PRECISION NOT NULL,
    dataset TEXT NOT NULL,
    user_name TEXT NOT NULL,
    cost_micro BIGINT NOT NULL CHECK (cost_micro > 0),
    spent_after_micro BIGINT NOT NULL,
    total_micro BIGINT NOT NULL,
    period BIGINT NOT NULL DEFAULT 0,
    events TEXT,  -- (ε, δ) datasets: the noise events charged, for the accountant
    fingerprint TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Cost:
    """What one release spends: its exact ε for a pure-ε budget, or, for an (ε, δ) budget, its noise
    events, which the accountant composes with everything the account spent before."""

    epsilon: Fraction | float
    events: tuple[NoiseEvent, ...] = ()


@dataclass(frozen=True)
class Terms:
    """An account's budget as the policy sets it, in the period that is current now."""

    total: PureDP
    delta: float | None = None  # None: pure ε
    period: int = 0
    refreshes: str = ""  # when the budget refreshes, for the refusal's hint

    @classmethod
    def of(cls, budget: Budget, now: float) -> Terms:
        return cls(PureDP.total(budget.epsilon), budget.delta, budget.period(now), budget.refreshes(now))


@dataclass(frozen=True)
class Balance:
    dataset: str
    user: str
    total: PureDP
    spent: PureDP

    @property
    def remaining(self) -> PureDP:
        return self.total - self.spent


class Ledger:
    def __init__(self, location: str | Path | Database) -> None:
        self.db = as_database(location)
        self.location = self.db.location
        self.db.create(SCHEMA + audit.SCHEMA)
        self.remembered = AnswerMemory()

    def close(self) -> None:
        self.db.close()

    def balance(self, dataset: str, user: str, total: PureDP, period: int = 0) -> Balance:
        with self.db.read() as tx:
            return Balance(dataset, user, total, PureDP(_spent(tx, dataset, user, period)))

    def charge(
        self,
        dataset: str,
        user: str,
        cost: Cost,
        terms: Terms,
        fingerprint: str,
        audited: dict[str, Any] | None = None,
    ) -> tuple[Balance, PureDP]:
        """Charge one release atomically, before it is released, or raise BudgetExhausted charging
        nothing. Returns the new balance and what this release cost.

        Pure ε: the cost rounded up to the micro-ε. (ε, δ): the growth of the account's composed ε at
        the budget's δ (privacy.accounting), at least one micro-ε.
        """
        with self.db.write() as tx:
            return _debit(tx, dataset, user, cost, terms, fingerprint, audited)

    def headroom(self, dataset: str, user: str, cost: Cost, terms: Terms) -> None:
        """Refuse (BudgetExhausted) a release the account cannot pay for, reading only: the check
        before the engine runs. The charge itself re-checks inside its own transaction."""
        with self.db.read() as tx:
            if terms.delta is None:
                pure_headroom(tx, dataset, user, PureDP.from_epsilon(cost.epsilon), terms)
            else:
                composed_cost(tx, dataset, user, cost.events, terms)

    def charge_and_keep(
        self,
        dataset: str,
        user: str,
        cost: Cost,
        terms: Terms,
        fingerprint: str,
        audited: dict[str, Any] | None,
        answers: Mapping[str, str],
    ) -> tuple[Balance, PureDP, dict[str, str]]:
        """The only place budget is spent: one transaction (one fsync) that debits the release, writes
        its audit row and stores its answers, before anything is sent. If another process stored
        these answers first, nothing is charged (cost 0) and its answers come back instead, so one
        released answer is charged once. BudgetExhausted charges and stores nothing."""
        with self.db.write() as tx:
            stored = {key: tx.one("SELECT answer FROM answers WHERE key = ?", (key,)) for key in answers}
            if all(row is not None for row in stored.values()):
                balance = Balance(dataset, user, terms.total, PureDP(_spent(tx, dataset, user, terms.period)))
                kept = {key: str(row[0]) for key, row in stored.items() if row}
                spent = PureDP(0)
            else:
                balance, spent = _debit(tx, dataset, user, cost, terms, fingerprint, audited)
                kept = _keep_answers(tx, answers, dataset, user)
        self.remembered.add(kept)  # committed: from now on a re-serve needs no read
        return balance, spent, kept

    def secret(self, name: str) -> str:
        """A random secret made once and kept: stable across restarts and shared by replicas."""
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            row = tx.one("SELECT value FROM secrets WHERE name = ?", (name,))
        assert row is not None
        return str(row[0])

    def find_answer(self, key: str) -> str | None:
        """A released answer (its JSON), if this question was answered before."""
        return self.find_answers([key])[key]

    def find_answers(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Several released answers (a bucketed question's buckets): from memory, else in one read."""
        found: dict[str, str | None] = self.remembered.get(keys)
        missing = [key for key, answer in found.items() if answer is None]
        if missing:
            with self.db.read() as tx:
                rows = {key: tx.one("SELECT answer FROM answers WHERE key = ?", (key,)) for key in missing}
            read = {key: str(row[0]) for key, row in rows.items() if row}
            self.remembered.add(read)
            found.update(read)
        return found


def _keep_answers(tx: Tx, answers: Mapping[str, str], dataset: str, user: str) -> dict[str, str]:
    kept = {}
    for key, answer in answers.items():
        tx.execute(
            "INSERT INTO answers (key, at, dataset, user_name, answer) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, time.time(), dataset, user, answer),
        )
        row = tx.one("SELECT answer FROM answers WHERE key = ?", (key,))
        assert row is not None
        kept[key] = str(row[0])
    return kept


def _debit(
    tx: Tx,
    dataset: str,
    user: str,
    cost: Cost,
    terms: Terms,
    fingerprint: str,
    audited: dict[str, Any] | None,
) -> tuple[Balance, PureDP]:
    if terms.delta is None:
        price = PureDP.from_epsilon(cost.epsilon)
        return debit_pure(tx, dataset, user, price, terms, fingerprint, audited), price
    return debit_composed(tx, dataset, user, cost.events, terms, fingerprint, audited)


def pure_headroom(tx: Tx, dataset: str, user: str, cost: PureDP, terms: Terms) -> int:
    """What a pure-ε account has spent (micro-ε); raises BudgetExhausted if `cost` would pass it."""
    if cost.micro <= 0:
        raise ValueError("a debit must cost something")
    spent = _spent(tx, dataset, user, terms.period)
    if spent + cost.micro > terms.total.micro:
        remaining = PureDP(max(terms.total.micro - spent, 0))
        raise _exhausted(dataset, cost, remaining, terms.total, terms.refreshes)
    return spent


def debit_pure(
    tx: Tx,
    dataset: str,
    user: str,
    cost: PureDP,
    terms: Terms,
    fingerprint: str,
    audited: dict[str, Any] | None,
    events: Sequence[NoiseEvent] = (),
) -> Balance:
    """The pure-ε debit inside the caller's write transaction; `events`, if given, are kept for
    an accountant that composes this account with others."""
    spent = pure_headroom(tx, dataset, user, cost, terms)
    new_spent = spent + cost.micro
    kept = accounting.to_json(events) if events else None
    _record(tx, dataset, user, terms.period, new_spent, cost.micro, terms.total, fingerprint, kept, audited)
    return Balance(dataset, user, terms.total, PureDP(new_spent))


def events_spent(tx: Tx, dataset: str, user: str, period: int) -> list[NoiseEvent]:
    """Every noise event the account was charged in the period."""
    history: list[NoiseEvent] = []
    for (text,) in tx.execute(
        "SELECT events FROM debits WHERE dataset = ? AND user_name = ? AND period = ? AND events IS NOT NULL",
        (dataset, user, period),
    ):
        history.extend(accounting.from_json(text))
    return history


def composed_cost(
    tx: Tx, dataset: str, user: str, events: Sequence[NoiseEvent], terms: Terms
) -> tuple[int, PureDP]:
    """What the account has spent (micro-ε) and what it would have spent with `events` composed in,
    at the budget's δ; raises BudgetExhausted if that passes the total."""
    assert terms.delta is not None
    spent = _spent(tx, dataset, user, terms.period)
    history = events_spent(tx, dataset, user, terms.period)
    after = PureDP.from_epsilon(accounting.epsilon_of([*history, *events], terms.delta))
    if after.micro > terms.total.micro:
        needs = PureDP(max(after.micro - spent, 1))
        raise _exhausted(
            dataset,
            needs,
            PureDP(max(terms.total.micro - spent, 0)),
            terms.total,
            terms.refreshes,
            terms.delta,
        )
    return spent, after


def debit_composed(
    tx: Tx,
    dataset: str,
    user: str,
    events: Sequence[NoiseEvent],
    terms: Terms,
    fingerprint: str,
    audited: dict[str, Any] | None,
) -> tuple[Balance, PureDP]:
    """The (ε, δ) debit inside the caller's write transaction (with whatever it records alongside)."""
    spent, after = composed_cost(tx, dataset, user, events, terms)
    new_spent = max(after.micro, spent + 1)
    _record(
        tx,
        dataset,
        user,
        terms.period,
        new_spent,
        new_spent - spent,
        terms.total,
        fingerprint,
        accounting.to_json(events),
        audited,
    )
    return Balance(dataset, user, terms.total, PureDP(new_spent)), PureDP(new_spent - spent)


def _record(
    tx: Tx,
    dataset: str,
    user: str,
    period: int,
    new_spent: int,
    cost: int,
    total: PureDP,
    fingerprint: str,
    events: str | None,
    audited: dict[str, Any] | None,
) -> None:
    """The debit, the new balance and, when `audited` is given, its "query answered" audit row:
    one transaction, so no crash can leave a debit without its audit row or the reverse."""
    tx.execute(
        "INSERT INTO accounts (dataset, user_name, period, spent_micro) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (dataset, user_name, period) DO UPDATE SET spent_micro = excluded.spent_micro",
        (dataset, user, period, new_spent),
    )
    tx.execute(
        "INSERT INTO debits (at, dataset, user_name, cost_micro, spent_after_micro, total_micro, "
        "fingerprint, period, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (time.time(), dataset, user, cost, new_spent, total.micro, fingerprint, period, events),
    )
    if audited is not None:
        detail = {**audited, "fingerprint": fingerprint, "epsilon": cost / 1_000_000}
        audit.append(tx, "query answered", user, dataset, detail)


def _spent(tx: Tx, dataset: str, user: str, period: int) -> int:
    row = tx.execute(
        "SELECT spent_micro FROM accounts WHERE dataset = ? AND user_name = ? AND period = ?",
        (dataset, user, period),
    )
    return int(row[0][0]) if row else 0


@dataclass(frozen=True)
class Account:
    """One (dataset, user) budget in its current period, as the system views and metrics show it."""

    dataset: str
    user: str
    total: float
    spent: float
    period: int
    answers: int  # charged answers in the period

    @property
    def remaining(self) -> float:
        return max(self.total - self.spent, 0.0)


def current_accounts(db: Database, policy: Policy, now: float) -> list[Account]:
    """Every user who may query data, and anyone else who spent, on every dataset, in its current period."""
    readers = {u for u, spec in policy.users.items() if spec.role in READER_ROLES}
    out = []
    for name, dataset in sorted(policy.datasets.items()):
        period = dataset.budget.period(now)
        where = (name, period)
        spent = dict(
            db.query("SELECT user_name, spent_micro FROM accounts WHERE dataset = ? AND period = ?", where)
        )
        answers = dict(
            db.query(
                "SELECT user_name, count(*) FROM debits WHERE dataset = ? AND period = ? GROUP BY 1", where
            )
        )
        for user in sorted(readers | set(spent)):
            out.append(
                Account(
                    name,
                    user,
                    dataset.budget.epsilon,
                    spent.get(user, 0) / 1_000_000,
                    period,
                    answers.get(user, 0),
                )
            )
    return out


def _exhausted(
    dataset: str, needs: PureDP, remaining: PureDP, total: PureDP, refreshes: str, delta: float | None = None
) -> BudgetExhausted:
    at = f" (at δ {delta:g})" if delta is not None else ""
    return BudgetExhausted(
        f'privacy budget exhausted on dataset "{dataset}": this query needs ε {needs.epsilon:.6g}{at} '
        f"but only ε {remaining.epsilon:.6g} of {total.epsilon:.6g} is left",
        hint="Ask with a smaller ε (SET dp.epsilon = ...), or ask an admin for more budget."
        + (f" The budget refreshes {refreshes}." if refreshes else ""),
    )
