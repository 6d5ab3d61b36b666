"""The SQLite ledger: atomic debits, refusals that charge nothing, no overspend under threads."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgerrors import BudgetExhausted
from privacy.budget import PureDP
from stores.ledger import Balance, Cost, Ledger, Terms


def _debit(
    ledger: Ledger,
    dataset: str,
    user: str,
    cost: PureDP,
    total: PureDP,
    fingerprint: str,
    period: int = 0,
    refreshes: str = "",
) -> Balance:
    """A pure-ε charge of exactly `cost`."""
    exact = Cost(Fraction(cost.micro, 1_000_000))
    return ledger.charge(dataset, user, exact, Terms(total, None, period, refreshes), fingerprint)[0]


def test_debit_until_exhausted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    total = PureDP.total(1.0)
    assert _debit(ledger, "d", "u", PureDP.from_epsilon(0.4), total, "f").remaining == PureDP.total(0.6)
    _debit(ledger, "d", "u", PureDP.from_epsilon(0.6), total, "f")
    with pytest.raises(BudgetExhausted) as raised:
        _debit(ledger, "d", "u", PureDP.from_epsilon(1e-6), total, "f")
    assert raised.value.sqlstate == "53400"
    assert ledger.balance("d", "u", total).spent == total
    assert ledger.balance("d", "other", total).spent == PureDP(0)


def test_debits_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _debit(Ledger(path), "d", "u", PureDP.from_epsilon(0.25), PureDP.total(1), "f")
    assert Ledger(path).balance("d", "u", PureDP.total(1)).spent == PureDP.from_epsilon(0.25)


@settings(max_examples=25, deadline=None)
@given(
    total_micro=st.integers(min_value=1, max_value=5_000_000),
    costs=st.lists(st.integers(min_value=1, max_value=2_000_000), min_size=1, max_size=24),
)
def test_concurrent_debits_never_overspend(
    tmp_path_factory: pytest.TempPathFactory, total_micro: int, costs: list[int]
) -> None:
    ledger = Ledger(tmp_path_factory.mktemp("ledger") / "l.sqlite")
    total = PureDP(total_micro)
    granted: list[int] = []
    lock = threading.Lock()

    def spend(cost: int) -> None:
        try:
            _debit(ledger, "d", "u", PureDP(cost), total, "f")
        except BudgetExhausted:
            return
        with lock:
            granted.append(cost)

    threads = [threading.Thread(target=spend, args=(c,)) for c in costs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = ledger.balance("d", "u", total).spent.micro
    assert spent == sum(granted) <= total_micro
    ledger.close()


def test_two_ledger_handles_on_one_file_share_the_budget(tmp_path: Path) -> None:
    """Like two proxy processes on one SQLite file: BEGIN IMMEDIATE serialises them."""
    path = tmp_path / "l.sqlite"
    a, b = Ledger(path), Ledger(path)
    total = PureDP.total(1.0)
    _debit(a, "d", "u", PureDP.from_epsilon(0.7), total, "f")
    with pytest.raises(BudgetExhausted):
        _debit(b, "d", "u", PureDP.from_epsilon(0.5), total, "f")
    assert b.balance("d", "u", total).spent == PureDP.from_epsilon(0.7)


def test_periods_have_separate_budgets(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    total = PureDP.total(1.0)
    _debit(ledger, "d", "u", PureDP.from_epsilon(1.0), total, "f", period=5)
    with pytest.raises(BudgetExhausted) as raised:
        _debit(
            ledger,
            "d",
            "u",
            PureDP.from_epsilon(0.1),
            total,
            "f",
            period=5,
            refreshes="on 2027-01-01 00:00 UTC",
        )
    assert "refreshes on 2027-01-01" in (raised.value.hint or "")
    _debit(ledger, "d", "u", PureDP.from_epsilon(0.4), total, "f", period=6)  # a new period starts afresh
    assert ledger.balance("d", "u", total, period=6).spent == PureDP.from_epsilon(0.4)


def test_budget_periods_from_the_policy() -> None:
    from rewriter.policy import Budget

    weekly = Budget(epsilon=1.0, refresh_days=7)
    day = 86_400
    assert weekly.period(0) == weekly.period(7 * day - 1) == 1 and weekly.period(7 * day) == 2
    assert weekly.refreshes(3 * day) == "on 1970-01-08 00:00 UTC"
    forever = Budget(epsilon=1.0)
    assert forever.period(10**9) == 0 and forever.refreshes(10**9) == ""


def test_charge_and_keep_debits_and_stores_in_one_transaction_once_per_answer(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    terms = Terms(PureDP.total(1.0))
    cost = Cost(Fraction(4, 10))
    ledger.headroom("d", "u", cost, terms)  # reading only
    balance, spent, kept = ledger.charge_and_keep("d", "u", cost, terms, "f", None, {"k1": "first"})
    assert (
        spent == PureDP.from_epsilon(0.4)
        and kept == {"k1": "first"}
        and balance.remaining == PureDP.total(0.6)
    )
    # the same answer computed again (another process, a race): the stored one, and no second charge
    balance, spent, kept = ledger.charge_and_keep("d", "u", cost, terms, "f", None, {"k1": "second"})
    assert spent == PureDP(0) and kept == {"k1": "first"} and balance.remaining == PureDP.total(0.6)
    ledger.charge_and_keep("d", "u", cost, terms, "f", None, {"k2": "x"})
    with pytest.raises(BudgetExhausted):
        ledger.headroom("d", "u", cost, terms)
    with pytest.raises(BudgetExhausted):  # refused inside the transaction too: nothing stored
        ledger.charge_and_keep("d", "u", cost, terms, "f", None, {"k3": "y"})
    assert ledger.find_answer("k3") is None and ledger.find_answer("k2") == "x"
    assert ledger.balance("d", "u", PureDP.total(1.0)).remaining == PureDP.total(0.2)
