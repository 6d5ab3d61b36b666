"""The whole privacy path of an aggregate query, in order. Read RULES to learn it.

Each rule takes the sqlglot tree and the context and returns the tree, raising a `PgError` to refuse.
Then `clip_values` builds the engine query and `plan_noise` decides ε, sensitivities and schema.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from pgerrors import FeatureNotAllowed
from rewriter.context import RewriteContext
from rewriter.plan import Plan
from rewriter.question import describe_question
from rewriter.rules.check_column_access import check_column_access
from rewriter.rules.clip_values import clip_values
from rewriter.rules.name_output_columns import name_output_columns
from rewriter.rules.plan_noise import plan_for_width, plan_noise
from rewriter.rules.qualify_against_policy import qualify_against_policy
from rewriter.rules.reject_unsupported_syntax import reject_unsupported_syntax
from rewriter.rules.resolve_dataset import resolve_dataset
from rewriter.rules.restrict_filters import restrict_filters

RULES = (
    reject_unsupported_syntax,  # allow-listed node types only (fail closed)
    resolve_dataset,  # one policy table, a role that may read it
    name_output_columns,  # PostgreSQL's output names, as explicit aliases
    qualify_against_policy,  # every column resolved against the policy schema
    check_column_access,  # each column used only where the policy allows
    restrict_filters,  # WHERE as a typed grammar that cannot fail on data
)


def plan_query(tree: exp.Expression, ctx: RewriteContext) -> Plan:
    if not isinstance(tree, exp.Select):
        raise FeatureNotAllowed(
            f"{tree.key.upper()} is not supported in a DP query",
            hint="Ask one SELECT with aggregates over one table.",
        )
    checked = tree.copy()
    for rule in RULES:
        checked = rule(checked, ctx)
    clipped = clip_values(checked, ctx)
    if ctx.target_ci_width is not None:
        plan = plan_for_width(clipped, ctx, ctx.target_ci_width)
    else:
        plan = plan_noise(clipped, ctx)
    return replace(plan, question=describe_question(checked, ctx.dataset(plan.dataset)))
