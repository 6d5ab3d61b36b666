"""Prometheus metrics, declared once. Served by `privacylens serve --metrics-port` (0 turns them off).

Labels carry dataset names, outcomes and SQLSTATEs — never user names in high-cardinality series
beyond the budget gauge, and never data.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUERIES = Counter(
    "privacylens_queries_total",
    "DP queries by dataset and outcome (answered, answered_again, refused).",
    ["dataset", "outcome", "sqlstate"],
)
EPSILON_SPENT = Counter("privacylens_epsilon_spent_total", "ε charged, by dataset.", ["dataset"])
BUDGET_REMAINING = Gauge("privacylens_budget_remaining", "ε left, by dataset and user.", ["dataset", "user"])
GROUPS = Counter(
    "privacylens_groups_released_total",
    "Groups released, by dataset and whether suppressed.",
    ["dataset", "suppressed"],
)
PHASE_SECONDS = Histogram(
    "privacylens_query_phase_seconds",
    "Time per phase of a DP query (plan, engine, noise).",
    ["phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONNECTIONS = Gauge("privacylens_connections", "Open client connections.")
ALERTS = Counter(
    "privacylens_alerts_total", "Attack alerts raised, by dataset and heuristic.", ["dataset", "kind"]
)
CACHE = Counter(
    "privacylens_answer_cache_total",
    "DP questions by whether the answer cache served them.",
    ["dataset", "hit"],
)
