"""Privacy budgets as types with exact arithmetic.

ε is held as an integer number of micro-ε so that sums never drift; a cost is rounded *up* to the
next micro-ε and a budget total *down*, so rounding can only ever make us more conservative.

>>> PureDP.from_epsilon(0.5).micro
500000
>>> PureDP.from_epsilon(1e-7).micro   # rounded up, never down
1
>>> (PureDP.from_epsilon(0.25) + PureDP.from_epsilon(0.25)).epsilon
0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

MICRO = 1_000_000


@dataclass(frozen=True, order=True)
class PureDP:
    """A pure ε-DP budget or cost, in integer micro-ε."""

    micro: int

    def __post_init__(self) -> None:
        if self.micro < 0:
            raise ValueError("a privacy budget cannot be negative")

    @classmethod
    def from_epsilon(cls, epsilon: float | Fraction) -> PureDP:
        """A cost: rounded up to the next micro-ε."""
        return cls(math.ceil(_exact(epsilon) * MICRO))

    @classmethod
    def total(cls, epsilon: float | Fraction) -> PureDP:
        """A budget total: rounded down to the micro-ε.

        >>> PureDP.total(1.2).micro   # read as the decimal 1.2 an admin wrote, not the nearest float
        1200000
        """
        return cls(math.floor(_exact(epsilon) * MICRO))

    @property
    def epsilon(self) -> float:
        return self.micro / MICRO

    def __add__(self, other: PureDP) -> PureDP:
        return PureDP(self.micro + other.micro)

    def __sub__(self, other: PureDP) -> PureDP:
        return PureDP(max(self.micro - other.micro, 0))


def _exact(epsilon: float | Fraction) -> Fraction:
    """Floats come from decimal text (policy files, SET): read them back as that decimal."""
    return epsilon if isinstance(epsilon, Fraction) else Fraction(repr(float(epsilon)))
