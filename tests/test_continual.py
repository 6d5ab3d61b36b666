"""The flippancy-capped tree mechanism's sensitivity (privacy/continual.py), checked exhaustively:
for every presence stream of up to 12 days with at most W changes, the tree nodes it moves never
exceed S(T, W); the cap leaves every stream with at most W changes and never adds presence, so the
bound holds for every input, capped or not."""

from __future__ import annotations

import itertools

from privacy.continual import capped_presence, dyadic_nodes, node_sensitivity, nodes_moved


def changes(presence: tuple[bool, ...] | list[bool]) -> int:
    return sum(1 for a, b in zip((False, *presence), presence, strict=False) if a != b)


def test_no_stream_moves_more_nodes_than_the_bound() -> None:
    for days in range(1, 13):
        streams = list(itertools.product([False, True], repeat=days))
        for cap in range(0, 7):
            moved = [nodes_moved(s) for s in streams if changes(s) <= cap]
            assert max(moved) <= node_sensitivity(days, cap), (days, cap)
            if cap == 1:
                assert max(moved) == node_sensitivity(days, cap)  # tight: on once, stays on


def test_the_cap_bounds_every_stream() -> None:
    for days in range(1, 11):
        for stream in itertools.product([False, True], repeat=days):
            for cap in range(0, 6):
                capped = capped_presence(stream, cap)
                assert changes(capped) <= cap
                assert all(wanted or not counted for wanted, counted in zip(stream, capped, strict=True))
                assert nodes_moved(capped) <= node_sensitivity(days, cap)


def test_the_tree_covers_every_day_at_every_level() -> None:
    for days in (1, 5, 8, 30):
        nodes = dyadic_nodes(days)
        assert nodes[-1] == (0, days)
        leaves = [n for n in nodes if n[1] - n[0] == 1]
        assert leaves[:days] == [(d, d + 1) for d in range(days)]
