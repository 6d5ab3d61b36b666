"""The FROM table must be a dataset the policy declares, and the user's role must allow reading it."""

from __future__ import annotations

from sqlglot import exp

from pgerrors import AccessDenied
from rewriter.context import RewriteContext
from rewriter.roles import READER_ROLES
from rewriter.tree import from_table


def resolve_dataset(tree: exp.Select, ctx: RewriteContext) -> exp.Select:
    table = from_table(tree)
    schema = table.db.lower() if table.db else "public"
    name = table.name.lower() if not table.this.quoted else table.name
    if table.catalog or schema != "public" or name not in ctx.policy.datasets:
        known = ", ".join(sorted(ctx.policy.datasets)) or "none"
        raise AccessDenied(
            f'relation "{".".join(p.name for p in table.parts)}" is not a dataset in the privacy policy',
            hint=f"Datasets you can query: {known}.",
        )
    if ctx.role not in READER_ROLES:
        raise AccessDenied(
            f'role "{ctx.role}" may not query data',
            hint="Auditors read the ledger and audit views, not datasets.",
        )
    table.set("db", None)
    table.set("this", exp.to_identifier(name))
    return tree
