"""A session's own state and the statements that only change it: SET, SHOW, RESET, transactions.

The transaction status is an explicit state machine whose every move is checked; its value is what
each ReadyForQuery reports (I idle, T in a transaction block, E in a failed one).

>>> tx = Transaction()
>>> tx.begin()
[]
>>> tx.fail(); tx.status.value
'E'
>>> tx.rollback_to_savepoint(); tx.status.value
'T'
>>> tx.end(), tx.status.value
('COMMIT', 'I')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sqlglot import exp

from engines.running import RunningQuery
from pgerrors import FeatureNotAllowed, InFailedTransaction, NoActiveTransaction
from proxy.results import Result
from proxy.session_settings import Settings
from rewriter.parse import Kind, Statement


class TxStatus(Enum):
    IDLE = "I"
    IN_BLOCK = "T"
    FAILED = "E"


_MOVES = {
    (TxStatus.IDLE, TxStatus.IN_BLOCK),  # BEGIN
    (TxStatus.IN_BLOCK, TxStatus.FAILED),  # an error inside the block
    (TxStatus.IN_BLOCK, TxStatus.IDLE),  # COMMIT / ROLLBACK
    (TxStatus.FAILED, TxStatus.IDLE),  # COMMIT (reported as ROLLBACK) / ROLLBACK
    (TxStatus.FAILED, TxStatus.IN_BLOCK),  # ROLLBACK TO SAVEPOINT
}


@dataclass
class Transaction:
    status: TxStatus = TxStatus.IDLE

    def _move(self, to: TxStatus) -> None:
        if to is self.status:
            return
        if (self.status, to) not in _MOVES:
            raise AssertionError(f"transaction status cannot move from {self.status.name} to {to.name}")
        self.status = to

    def begin(self) -> list[str]:
        if self.status is not TxStatus.IDLE:
            return ["there is already a transaction in progress"]
        self._move(TxStatus.IN_BLOCK)
        return []

    def fail(self) -> None:
        """An error: a transaction block fails; outside one nothing changes."""
        if self.status is TxStatus.IN_BLOCK:
            self._move(TxStatus.FAILED)

    def end(self) -> str:
        """COMMIT or ROLLBACK: returns how the block ended ("COMMIT" or "ROLLBACK")."""
        failed = self.status is TxStatus.FAILED
        self._move(TxStatus.IDLE)
        return "ROLLBACK" if failed else "COMMIT"

    def rollback_to_savepoint(self) -> None:
        self.require_block("ROLLBACK TO SAVEPOINT")
        self._move(TxStatus.IN_BLOCK)

    def require_block(self, what: str) -> None:
        if self.status is TxStatus.IDLE:
            raise NoActiveTransaction(f"{what} can only be used in transaction blocks")

    def check_may_run(self, kind: Kind) -> None:
        """In a failed block only the statements that end it run."""
        if self.status is TxStatus.FAILED and kind not in (Kind.ROLLBACK, Kind.COMMIT, Kind.ROLLBACK_TO):
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block",
                hint="Send ROLLBACK.",
            )


@dataclass
class SessionState:
    user: str
    role: str
    database: str
    pid: int
    tls: bool = False
    settings: Settings = field(default_factory=Settings)
    transaction: Transaction = field(default_factory=Transaction)
    running: RunningQuery = field(default_factory=RunningQuery)
    disconnected: Callable[[], bool] = field(default=lambda: False)


SESSION_KINDS = frozenset(
    {Kind.SET, Kind.SHOW, Kind.RESET, Kind.BEGIN, Kind.SAVEPOINT, Kind.RELEASE, Kind.ROLLBACK_TO}
    | {Kind.COMMIT, Kind.ROLLBACK}
)
SHOW_ALL_COLUMNS = [("name", "text"), ("setting", "text"), ("description", "text")]


def run_session_statement(statement: Statement, state: SessionState) -> Result:
    """SET, SHOW, RESET and transaction control: session state only, never data."""
    kind = statement.kind
    if kind is Kind.SET:
        return apply_set(statement, state)
    if kind is Kind.SHOW:
        name = show_name(statement)
        if name.lower() == "all":
            rows = [(n, v, "") for n, v in state.settings.all(state.user)]
            return Result(SHOW_ALL_COLUMNS, rows, "SHOW")
        return Result([(name, "text")], [(state.settings.show(name, state.user),)], "SHOW")
    if kind is Kind.RESET:
        words = statement.words
        state.settings.reset(words[1] if len(words) > 1 else "all")
        return Result(None, [], "RESET")
    tx = state.transaction
    if kind is Kind.BEGIN:
        return Result(None, [], "BEGIN", tx.begin())
    if kind is Kind.SAVEPOINT:
        tx.require_block("SAVEPOINT")
        return Result(None, [], "SAVEPOINT")
    if kind is Kind.RELEASE:
        tx.require_block("RELEASE SAVEPOINT")
        return Result(None, [], "RELEASE")
    if kind is Kind.ROLLBACK_TO:
        tx.rollback_to_savepoint()
        return Result(None, [], "ROLLBACK")
    assert kind in (Kind.COMMIT, Kind.ROLLBACK), kind
    notices = ["there is no transaction in progress"] if tx.status is TxStatus.IDLE else []
    ended = tx.end()
    return Result(None, [], "ROLLBACK" if kind is Kind.ROLLBACK else ended, notices)


def apply_set(statement: Statement, state: SessionState) -> Result:
    assert isinstance(statement.tree, exp.Set)
    for item in statement.tree.expressions:
        assignment = item.this if isinstance(item, exp.SetItem) else None
        if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
            raise FeatureNotAllowed(
                "this form of SET is not supported",
                hint="Use SET name = value, e.g. SET dp.epsilon = 0.2",
            )
        name = ".".join(p.name for p in assignment.this.parts)
        value = _set_value(assignment.expression)
        if value is None:
            state.settings.reset(name)
        else:
            state.settings.set(name, value)
    return Result(None, [], "SET")


def _set_value(value: exp.Expression) -> str | None:
    if isinstance(value, exp.Literal):
        return value.this
    if isinstance(value, (exp.Column, exp.Identifier, exp.Var)):
        name = value.name
        return None if name.lower() == "default" else name
    if isinstance(value, exp.Tuple):
        return ", ".join(str(_set_value(v)) for v in value.expressions)
    if isinstance(value, exp.Boolean):
        return "on" if value.this else "off"
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return "-" + value.this.this
    raise FeatureNotAllowed("SET takes a literal value")


_SHOW_ALIASES = {
    "transaction isolation level": "transaction_isolation",
    "time zone": "timezone",
    "session authorization": "session_authorization",
}


def show_name(statement: Statement) -> str:
    """SHOW's argument, e.g. `dp.epsilon` from the tokens SHOW, dp, ., epsilon."""
    words = " ".join(statement.words[1:]).strip().strip('"')
    name = re.sub(r"\s*\.\s*", ".", words)
    return _SHOW_ALIASES.get(name.lower(), name) or "all"
