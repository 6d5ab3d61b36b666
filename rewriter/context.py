"""What the rewriter knows besides the statement: the policy, who asks, and their DP settings."""

from __future__ import annotations

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

    def dataset(self, name: str) -> Dataset:
        return self.policy.datasets[name]
