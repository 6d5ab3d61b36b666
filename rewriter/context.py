"""What the rewriter knows besides the statement: the policy, who asks, and their DP settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from rewriter.policy import Dataset, Policy


@dataclass(frozen=True)
class RewriteContext:
    policy: Policy
    user: str
    role: str
    epsilon: float | None = None  # SET dp.epsilon; None means the dataset's default
    confidence: float | None = None  # SET dp.confidence; None means the dataset's default
    delta: float | None = None  # SET dp.delta
    mechanism: str | None = None  # SET dp.mechanism
    target_ci_width: float | None = None  # SET dp.target_ci_width: choose the smallest ε that meets it
    # Types the client declared for $1..$n in Parse (PostgreSQL type names; None = not declared).
    declared_parameter_types: tuple[str | None, ...] = field(default=())
    # Datasets declared one_row_per_unit whose engine has verified it on the data it serves; the
    # others are planned with the bound enforced (one row per unit).
    unique_units: frozenset[str] = frozenset()
    # The server clock (UTC, naive) that now(), CURRENT_DATE and intervals resolve against; None: read it.
    now: dt.datetime | None = None

    def dataset(self, name: str) -> Dataset:
        return self.policy.datasets[name]
