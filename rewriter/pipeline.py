"""The whole privacy path of an aggregate query, in order. Read RULES to learn it.

Each rule takes what the rule before it made and the context, and raises a `PgError` to refuse. The
first eight check and normalise the client's sqlglot tree; `clip_values` turns it into clipped measures
per public group, `bound_contribution` gives the engine query its shape (how much one person can
contribute), and `plan_noise` decides ε, sensitivities, mechanism and output schema: the Plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.plan import Plan
from rewriter.rules.bound_contribution import bound_contribution
from rewriter.rules.bucket_time_range import bucket_time_range
from rewriter.rules.check_column_access import check_column_access
from rewriter.rules.clip_values import clip_values
from rewriter.rules.name_output_columns import name_output_columns
from rewriter.rules.plan_noise import plan_noise
from rewriter.rules.qualify_against_policy import qualify_against_policy
from rewriter.rules.reject_unsupported_syntax import reject_unsupported_syntax
from rewriter.rules.resolve_clock import resolve_clock
from rewriter.rules.resolve_dataset import resolve_dataset
from rewriter.rules.restrict_filters import restrict_filters

RULES: tuple[Callable[[Any, RewriteContext], Any], ...] = (
    reject_unsupported_syntax,  # allow-listed node types only (fail closed)
    resolve_clock,  # now(), CURRENT_DATE, intervals, to_timestamp(n): literals from the server clock
    resolve_dataset,  # one policy table, a role that may read it
    name_output_columns,  # PostgreSQL's output names, as explicit aliases
    qualify_against_policy,  # every column resolved against the policy schema
    check_column_access,  # each column used only where the policy allows
    restrict_filters,  # WHERE as a typed grammar that cannot fail on data
    bucket_time_range,  # a time-bucketed question: its range taken out, as whole buckets ($a, $b)
    clip_values,  # tree -> ClippedQuery: clipped fixed-point measures per public group
    bound_contribution,  # how many rows and groups one person keeps (the sensitivities' premise)
    plan_noise,  # ClippedQuery -> Plan: ε, its split, sensitivities, mechanism, output schema
)


def plan_query(tree: exp.Expression, ctx: RewriteContext) -> Plan:
    if not isinstance(tree, exp.Select):
        raise FeatureNotAllowed(
            f"{tree.key.upper()} is not supported in a DP query",
            hint="Ask one SELECT with aggregates over one table.",
        )
    value: Any = tree.copy()
    for rule in RULES:
        value = rule(value, ctx)
    assert isinstance(value, Plan)
    return value
