"""Continual release: a key epoch's daily DAU or MAU series by the flippancy-capped tree mechanism.

One tree per (metric, epoch): the days whose count is taken in that epoch's key (at most a calendar
month, so T = 31 indices). Its first release charges the whole tree once: Gaussian noise on
every node, L2 sensitivity sqrt(S(T, W)) (`privacy.continual.node_sensitivity`: one person moves at
most S nodes by 1 each), σ from the accountant at the policy's (ε, δ). Every later day of the epoch
is free. Days are closed in order (`stores.activity_tree`); a day's value is the sum of the kept
noisy nodes that make its prefix, its interval the normal one for that many nodes' noise. What the
tree counts is capped presence: a person's switches beyond `changes` are not counted.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import duckdb

from answers.activity import Metric, Release
from privacy.accounting import NoiseEvent, gaussian_scale
from privacy.continual import node_sensitivity, prefix_nodes
from privacy.intervals import additive
from privacy.mechanisms import Gaussian
from rewriter.policy import ActivityDataset, ContinualRelease
from stores import ledger as accounts
from stores.activity import ActivityStore
from stores.activity_releases import Releases, account
from stores.activity_tree import Closed, Trees
from stores.epochs import Calendar
from stores.ledger import Terms

TREE_DAYS = 31  # a tree's epoch never spans more than a calendar month's days

ONE_DAY = dt.timedelta(days=1)


def tree_noise(setting: ContinualRelease) -> tuple[Gaussian, NoiseEvent]:
    """Each node's noise, and the one event the whole tree is charged as."""
    moved = node_sensitivity(TREE_DAYS, setting.changes)
    sigma = math.sqrt(moved) * gaussian_scale(setting.epsilon, setting.delta)
    # Continuous noise: the tree is one Gaussian on a vector with L2 sensitivity sqrt(S), which the
    # accountant models exactly (a scalar discrete Gaussian would round the sensitivity up).
    return Gaussian(sigma), NoiseEvent("gaussian", sigma, math.sqrt(moved))


def period_of(calendar: Calendar, metric: Metric, day: dt.date) -> tuple[str, dt.date]:
    """The epoch a day's count is taken in (its tree) and the first day of that tree."""
    pick = calendar.holding if metric == "dau" else calendar.counting
    name, first = pick(day).name, day
    while pick(first - ONE_DAY).name == name and (day - first).days < TREE_DAYS - 1:
        first -= ONE_DAY
    return name, first


class ContinualReleases:
    def __init__(self, store: ActivityStore, releases: Releases, trees: Trees) -> None:
        self.store = store
        self.releases = releases
        self.trees = trees

    def check(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        days: list[dt.date],
        terms_of: Callable[[dt.date], Terms],
    ) -> None:
        """Refuse (BudgetExhausted) before anything is counted if a tree not charged yet does not
        fit its month's cap."""
        setting = spec.continual
        assert setting is not None
        _, event = tree_noise(setting)
        calendar = self.store.keys.calendar(dataset)
        for name, first in sorted({period_of(calendar, metric, d) for d in days}):
            if not self.trees.closed(dataset, metric, name):
                self.releases.check(dataset, metric, 1, event, setting.epsilon, terms_of(first))

    def release(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        days: list[dt.date],
        window: int,
        terms_of: Callable[[dt.date], Terms],
        user: str,
    ) -> dict[dt.date, tuple[Release, bool]]:
        calendar = self.store.keys.calendar(dataset)
        by_period: dict[tuple[str, dt.date], list[dt.date]] = {}
        for day in days:
            by_period.setdefault(period_of(calendar, metric, day), []).append(day)
        out: dict[dt.date, tuple[Release, bool]] = {}
        for (name, first), period_days in sorted(by_period.items()):
            for _ in range(5):  # another process closing the same days first: read what it kept
                done = self._period(
                    dataset, spec, metric, name, first, sorted(period_days), window, terms_of, user
                )
                if done is not None:
                    out.update(done)
                    break
            else:
                raise RuntimeError(f"could not close the {metric} tree of {dataset} {name}: contention")
        self.trees.sweep(dataset)
        return out

    def _period(
        self,
        dataset: str,
        spec: ActivityDataset,
        metric: Metric,
        name: str,
        first: dt.date,
        days: list[dt.date],
        window: int,
        terms_of: Callable[[dt.date], Terms],
        user: str,
    ) -> dict[dt.date, tuple[Release, bool]] | None:
        setting = spec.continual
        assert setting is not None
        noise, event = tree_noise(setting)
        closed = self.trees.closed(dataset, metric, name)
        charge = not closed
        state = closed[max(closed)].state if closed else None
        staged: list[Closed] = []
        files = self.store.segments.files(dataset, name)
        erased = self.store.erased(dataset, name)
        for index in range((max(days) - first).days + 1):
            if index in closed:
                continue
            day = first + dt.timedelta(days=index)
            out = self.trees.stage(dataset, metric, name, index)
            size = 1 if metric == "dau" else window
            try:
                exact = self.trees.close_day(
                    files, erased, day - dt.timedelta(days=size - 1), day, setting.changes, state, out
                )
            except duckdb.IOException:  # the state read was swept: another asker closed later days
                for c in [*staged, Closed(index, 0, out)]:
                    c.state.unlink(missing_ok=True)
                return None
            staged.append(Closed(index, exact, out))
            state = out
        counted = {c.index: c.exact for c in [*closed.values(), *staged]}
        nodes = self.trees.nodes(dataset, metric, name)
        drawn: dict[tuple[int, int], float] = {}
        made = []
        for day in days:
            parts = prefix_nodes((day - first).days)
            for a, b in parts:
                if (a, b) not in nodes and (a, b) not in drawn:
                    exact = counted[b - 1] - (counted[a - 1] if a else 0)
                    (drawn[(a, b)],) = noise.release([float(exact)])
            value = sum(nodes.get(n, drawn.get(n, 0.0)) for n in parts)
            spread = Gaussian(noise.scale * math.sqrt(len(parts)))
            interval = additive(value, spread, spec.confidence)
            made.append(
                Release(
                    metric, day, 1 if metric == "dau" else window, float(value), interval.low, interval.high,
                    spec.confidence, 0.0, setting.delta, "tree_gaussian", spread.scale,
                    dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
                )
            )  # fmt: skip
        with self.store.db.write() as tx:
            if not self.trees.commit(tx, dataset, metric, name, staged, drawn):
                for c in staged:
                    c.state.unlink(missing_ok=True)
                return None
            charged = 0.0
            if charge:
                fingerprint = f"{dataset}:{metric}:tree:{name}"
                _, cost = accounts.debit_composed(
                    tx, dataset, account(metric), [event], terms_of(first), fingerprint, None
                )
                charged = cost.epsilon
            kept = {}
            for k, release in enumerate(made):
                paid = Release(**{**release.__dict__, "epsilon": charged if k == 0 else 0.0})
                kept[release.day] = self.releases.store(tx, dataset, paid, user)
        return kept
