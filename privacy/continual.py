"""Continual release of a daily distinct count with a flippancy cap: the binary-tree mechanism's
sensitivity, and the cap that makes it hold for every stream (after Jain, Kalemaj, Raskhodnikova,
Sivakumar and Smith, NeurIPS 2023; ../shared/notes/dau-mau.md).

The tree mechanism releases noisy sums of the day-to-day change Δ(t) = X(t) - X(t-1) of the count
over the dyadic intervals of [1, T]; the count on day t is the sum of O(log T) of them. One person's
presence p(t) ∈ {0, 1} adds p(t) - p(t-1) ∈ {-1, 0, 1} to Δ(t), so their contribution to a node is
the change of p across the node's interval, in {-1, 0, 1}: the node moves only if p differs at the
interval's two ends. With at most W changes of p, one person moves at most

    S(T, W) = Σ_{l=0..⌈log2 T⌉} min(W, ⌈T / 2^l⌉)

nodes, each by 1 (`node_sensitivity`; tested exhaustively against every stream for small T and W).
The cap must be enforced, never assumed: `capped_presence` refuses a switch on that would spend a
person's last allowed change (they stay off); switching off, as an erasure does, is always allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def node_sensitivity(days: int, changes: int) -> int:
    """S(T, W): the most tree nodes one person with at most W presence changes moves, each by 1.

    >>> node_sensitivity(30, 4), node_sensitivity(365, 4), node_sensitivity(365, 8)
    (19, 34, 60)
    """
    if days < 1 or changes < 0:
        raise ValueError("need at least one day and a non-negative cap")
    levels = math.ceil(math.log2(days)) if days > 1 else 0
    return sum(min(changes, math.ceil(days / 2**level)) for level in range(levels + 1))


def dyadic_nodes(days: int) -> list[tuple[int, int]]:
    """The tree's nodes as day ranges [start, end) over days 0..T-1, every level, leaves first."""
    nodes = []
    width = 1
    while True:
        nodes += [(start, min(start + width, days)) for start in range(0, days, width)]
        if width >= days:
            return nodes
        width *= 2


def capped_presence(present: Sequence[bool], changes: int) -> list[bool]:
    """The presence the mechanism counts: at most `changes` switches (from absent before day 0).
    A switch on that would use the last allowed change is refused (the person stays off), so a
    person can always be switched off, by inactivity or by an erasure.

    >>> capped_presence([True, False, True, False, True], 3)
    [True, False, False, False, False]
    """
    out, used, on = [], 0, False
    for wanted in present:
        on, used = switched(on, used, wanted, changes)
        out.append(on)
    return out


def nodes_moved(presence: Sequence[bool]) -> int:
    """How many tree nodes one person's presence moves (its change across each node's interval)."""
    before = [False, *presence]  # p(start - 1) for start = 0 is "absent"
    return sum(1 for start, end in dyadic_nodes(len(presence)) if before[start] != presence[end - 1])


def prefix_nodes(index: int) -> list[tuple[int, int]]:
    """The tree nodes [start, end) whose sums make the prefix [0, index]: one per set bit of
    index + 1, widest first, each a node of `dyadic_nodes` (aligned, full width).

    >>> prefix_nodes(0), prefix_nodes(5), prefix_nodes(7)
    ([(0, 1)], [(0, 4), (4, 6)], [(0, 8)])
    """
    nodes, start, width = [], 0, 1 << (index + 1).bit_length()
    while width:
        if start + width <= index + 1:
            nodes.append((start, start + width))
            start += width
        width >>= 1
    return nodes


def switched(on: bool, used: int, wanted: bool, changes: int) -> tuple[bool, int]:
    """One day of `capped_presence`: the presence counted and the changes used after it."""
    if wanted != on and (not wanted or used + 1 < changes):
        return wanted, used + 1
    return on, used
