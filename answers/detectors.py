"""Attack heuristics over the answers already released on a dataset: pure functions, no storage.

They are defence in depth; the budget stays the guarantee. Each works only on what was released
(noisy group sizes, the normalised question, who asked and when), so running them spends nothing.

- differencing: two answered questions with the same groups and a shared aggregate whose filters
  differ by exactly one condition that does not merely drop whole groups, where some group released
  by both has noisy sizes that differ by at most `max_units`: the condition isolates a few units, and
  subtracting the answers would single them out. The noise on that difference (sd) decides how
  sure: a condition shaped to leave out chosen individuals (an exclusion such as `<>` / `NOT IN`,
  or any condition on the privacy unit) is flagged up to `max_units` + 3 sd, so a real attack is
  missed with probability below 0.5%; any other condition (a range) only up to `max_units` − 3 sd,
  so honest drill-downs that leave out a few dozen units are not flagged at low ε (a range that
  isolates is then caught only at high ε, where its answers are precise enough to matter).
- averaging: more than `max_repeats` fresh answers to the same aggregate of the same normalised
  question (rewordings and other ε values included), from one account or several: averaging them
  would wear the noise down. Re-served answers (the answer cache) do not count: they add nothing.
- burst: more than `max_queries` fresh answers to one user within `seconds`.

A finding names every query involved, in order, and every account behind them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from rewriter.policy import Detectors
from rewriter.question import Question


@dataclass(frozen=True)
class Release:
    """One answered query as the detectors see it."""

    id: int
    at: float
    user: str
    question: Question
    sizes: tuple[float | None, ...]  # per public group: the noisy size, None when suppressed
    size_sd: float  # standard deviation of the noise on one size
    fresh: bool  # False when re-served from the answer cache


@dataclass(frozen=True)
class Finding:
    kind: str  # "differencing", "averaging" or "burst"
    queries: tuple[int, ...]  # Release ids, oldest first
    users: tuple[str, ...]
    summary: str
    signature: str  # the same attack found again has the same signature

    @property
    def across_accounts(self) -> bool:
        return len(self.users) > 1


class History:
    """Earlier fresh releases of one dataset, indexed so that each detector reads only its candidates:
    the releases whose filters differ from a new one's by one condition (differencing), those of the
    same question (averaging), and the same user's (burst). A new release costs a few dictionary
    lookups, whatever the history's length; the answers are those of a scan of the whole history."""

    def __init__(self, releases: Sequence[Release] = ()) -> None:
        self.releases: list[Release] = []  # oldest first
        self._by_filters: dict[tuple, list[Release]] = {}  # (groups, conjunct set)
        self._by_filters_less_one: dict[tuple, list[Release]] = {}  # (groups, conjunct set minus one)
        self._by_user: dict[str, list[Release]] = {}
        self._first: int | None = None  # releases before this id were forgotten (see keep)
        for release in releases:
            self.add(release)

    def add(self, release: Release) -> None:
        if not release.fresh:
            return
        self.releases.append(release)
        groups, conjuncts = release.question.groups, frozenset(release.question.conjuncts)
        self._by_filters.setdefault((groups, conjuncts), []).append(release)
        for condition in conjuncts:
            self._by_filters_less_one.setdefault((groups, conjuncts - {condition}), []).append(release)
        self._by_user.setdefault(release.user, []).append(release)

    def keep(self, since: float, limit: int) -> None:
        """Forget releases older than `since` and all but the `limit` newest; the indexes are rebuilt
        when half of what they hold is gone (amortised constant work per release)."""
        kept = [r for r in self.releases[-limit:] if r.at >= since]
        if len(kept) * 2 < len(self.releases) or len(kept) == 0:
            fresh = History(kept)
            self.releases, self._by_filters = fresh.releases, fresh._by_filters
            self._by_filters_less_one, self._by_user = fresh._by_filters_less_one, fresh._by_user
        self._first = kept[0].id if kept else None

    def _alive(self, found: Sequence[Release], new: Release, since: float) -> list[Release]:
        first = self._first
        return [r for r in found if r.id != new.id and r.at >= since and (first is None or r.id >= first)]

    def one_condition_apart(self, new: Release, since: float) -> list[Release]:
        """Releases with the same groups whose filters are `new`'s plus or minus one condition."""
        groups, conjuncts = new.question.groups, frozenset(new.question.conjuncts)
        found = list(self._by_filters_less_one.get((groups, conjuncts), ()))  # one condition more
        for condition in conjuncts:  # one condition less
            found += self._by_filters.get((groups, conjuncts - {condition}), ())
        return sorted(self._alive(found, new, since), key=lambda r: r.id)

    def same_question(self, new: Release, since: float) -> list[Release]:
        key = (new.question.groups, frozenset(new.question.conjuncts))
        return [
            r
            for r in self._alive(self._by_filters.get(key, ()), new, since)
            if r.question.conjuncts == new.question.conjuncts
        ]

    def of_user(self, user: str, since: float) -> list[Release]:
        first = self._first
        return [r for r in self._by_user.get(user, ()) if r.at >= since and (first is None or r.id >= first)]


def find(
    new: Release, history: History | Sequence[Release], config: Detectors, unit_column: str = ""
) -> list[Finding]:
    """What `new`, taken with the earlier releases on its dataset, looks like. Oldest history first."""
    if not new.fresh:
        return []
    if not isinstance(history, History):
        history = History(history)
    since = new.at - config.window_hours * 3600
    found = [
        differencing(
            new, history.one_condition_apart(new, since), config.differencing.max_units, unit_column
        ),
        averaging(new, history.same_question(new, since), config.averaging.max_repeats),
        burst(
            new,
            [r for r in history.of_user(new.user, since) if r.id != new.id],
            config.burst.max_queries,
            config.burst.seconds,
        ),
    ]
    return [f for f in found if f is not None]


def differencing(
    new: Release, earlier: Sequence[Release], max_units: int, unit_column: str = ""
) -> Finding | None:
    mine = set(new.question.conjuncts)
    for other in reversed(earlier):
        theirs = set(other.question.conjuncts)
        if len(mine ^ theirs) != 1 or other.question.groups != new.question.groups:
            continue
        if not set(other.question.measures) & set(new.question.measures):
            continue
        (condition,) = mine ^ theirs
        singles_out = _singles_out(condition, unit_column)
        columns, (plain, bucketed) = _columns(condition), _group_columns(new.question.groups)
        if columns <= plain or (columns <= bucketed and not singles_out):
            continue  # it keeps or drops whole groups (or buckets), which both answers release anyway
        wide, narrow = (other, new) if len(theirs) < len(mine) else (new, other)
        sd = math.hypot(wide.size_sd, narrow.size_sd)
        limit = max_units + (3 * sd if singles_out else -3 * sd)
        for a, b in zip(wide.sizes, narrow.sizes, strict=False):
            if a is None or b is None or a - b > limit:
                continue
            first, second = sorted((other, new), key=lambda r: r.id)
            return Finding(
                "differencing",
                (first.id, second.id),
                _users(first, second),
                f"queries {first.id} and {second.id} differ only by the condition {condition!r}, "
                f"which leaves out about {max(a - b, 0):.0f} units (noisy) of a released group "
                f"(at most {max_units} counts as isolating)",
                f"differencing:{first.id}:{second.id}",
            )
    return None


def averaging(new: Release, earlier: Sequence[Release], max_repeats: int) -> Finding | None:
    target = (new.question.groups, new.question.conjuncts)
    for measure in new.question.measures:
        same = [
            r
            for r in earlier
            if (r.question.groups, r.question.conjuncts) == target and measure in r.question.measures
        ]
        if len(same) + 1 > max_repeats:
            involved = [*same, new]
            return Finding(
                "averaging",
                tuple(r.id for r in involved),
                _users(*involved),
                f"{len(involved)} fresh answers to {measure} of the same question "
                f"(filters: {' AND '.join(new.question.conjuncts) or 'none'}; "
                f"groups: {', '.join(new.question.groups) or 'none'}); more than {max_repeats} "
                "could be averaged to wear the noise down",
                f"averaging:{measure}:{target}",
            )
    return None


def burst(new: Release, earlier: Sequence[Release], max_queries: int, seconds: float) -> Finding | None:
    recent = [r for r in earlier if r.user == new.user and r.at >= new.at - seconds]
    if len(recent) + 1 <= max_queries:
        return None
    involved = [*recent, new]
    return Finding(
        "burst",
        tuple(r.id for r in involved),
        (new.user,),
        f"{len(involved)} fresh answers to {new.user} within {seconds:g} s (more than {max_queries})",
        f"burst:{new.user}",
    )


def _singles_out(condition: str, unit_column: str) -> bool:
    """An exclusion (<>, NOT IN, NOT LIKE, IS NOT NULL, NOT ...) or a condition on the privacy unit:
    the shapes that leave out chosen individuals, rather than a range of values."""
    node = sqlglot.parse_one(condition, read="postgres")
    if unit_column and unit_column in _columns(condition):
        return True
    if isinstance(node, (exp.NEQ, exp.Not)):
        return True
    return isinstance(node, (exp.In, exp.Like, exp.ILike, exp.Is)) and bool(node.args.get("negate"))


def _columns(sql: str) -> set[str]:
    return {c.name for c in sqlglot.parse_one(sql, read="postgres").find_all(exp.Column)}


def _group_columns(groups: Sequence[str]) -> tuple[set[str], set[str]]:
    """(columns grouped by as they are, columns any group expression reads: date_trunc, CASE, ...)."""
    parsed = [sqlglot.parse_one(g, read="postgres") for g in groups]
    plain = {g.name for g in parsed if isinstance(g, exp.Column)}
    return plain, {c.name for g in parsed for c in g.find_all(exp.Column)}


def _users(*releases: Release) -> tuple[str, ...]:
    return tuple(sorted({r.user for r in releases}))
