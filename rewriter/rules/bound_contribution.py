"""Contribution bounding as a rule of its own: how much one person can move the engine's aggregates.

A dataset whose data was checked to hold one row per privacy unit (`RewriteContext.unique_units`)
gets the plain grouped query: each person is one row, so in one group at most. Every other dataset
gets the bounded plan: each person keeps at most `max_rows_per_group` rows per group and at most
`max_groups_contributed` groups, picked by a keyed hash of the row (`rewriter.row_hash`), so the
sensitivities `plan_noise` derives from those bounds hold whatever the data. Either way rows without
a privacy unit are dropped (they could not be bounded) and the group size measured for suppression
counts persons.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from rewriter.context import RewriteContext
from rewriter.policy import Dataset
from rewriter.row_hash import row_hash, tie_breaks
from rewriter.rules.clip_values import THRESHOLD_MEASURE, ClippedQuery
from rewriter.snippets import snippet


def bound_contribution(query: ClippedQuery, ctx: RewriteContext) -> ClippedQuery:
    dataset = ctx.dataset(query.dataset)
    parts = query.parts
    unique = dataset.one_row_per_unit and query.dataset in ctx.unique_units
    unit = _unit_column(dataset)
    group_size = exp.Count(this=exp.Star()) if unique else exp.Count(this=exp.Distinct(expressions=[unit]))
    measures = [exp.alias_(group_size, THRESHOLD_MEASURE), *(m.copy() for m in parts.measures)]
    conditions = [
        *(c.copy() for c in parts.conditions),
        exp.Not(this=exp.Is(this=unit.copy(), expression=exp.Null())),
    ]
    keys = [k.copy() for k in parts.keys]
    domains = [d.copy() for d in parts.group_domains]
    if unique:
        engine = exp.select(
            *(exp.alias_(k.copy(), f"__k{i}") for i, k in enumerate(keys)), *measures, copy=False
        ).from_(exp.to_table(query.dataset, quoted=True), copy=False)
        engine = engine.where(exp.and_(*conditions, copy=False), copy=False)
        if keys:
            engine = engine.group_by(*keys, copy=False)
        if domains:
            # Whole groups outside the declared values are dropped after grouping: the same rows
            # reach each released group, without a per-row IN test. The never-true aggregate term
            # keeps DuckDB from pushing the test back down into the scan as a hash join.
            never = exp.LT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(0))
            engine = engine.having(exp.or_(exp.and_(*domains), never), copy=False)
    else:  # rows outside the declared values must not use up a person's groups: filter them first
        engine = _bounded(
            query.dataset, dataset, keys, list(parts.key_kinds), [*conditions, *domains], measures
        )
    return replace(query, engine=_as_parameters(engine))


def _unit_column(dataset: Dataset) -> exp.Column:
    return exp.column(dataset.privacy_unit, quoted=True)


def _bounded(
    name: str,
    dataset: Dataset,
    engine_keys: list[exp.Expression],
    key_kinds: list[str],
    conditions: list[exp.Expression],
    measures: list[exp.Expression],
) -> exp.Select:
    """Each unit keeps at most `max_rows_per_group` rows per
    group and at most `max_groups_contributed` groups, chosen by a keyed hash.

    The hash (`rewriter.row_hash`) is keyed with `privacylens_secret()`, which each engine supplies
    from a secret kept in the ledger database: the choice is deterministic (the same question keeps
    the same rows, on any engine) but no analyst can predict or steer it, and the secret never
    appears in SQL text.
    """
    bounds = dataset.bounds()
    duck = "duckdb"
    unit = _unit_column(dataset).sql(duck)
    row = [(c, spec.type) for c, spec in dataset.columns.items()]
    key_names = [f"__k{i}" for i in range(len(engine_keys))]
    keys_select = "".join(f", {k.sql(duck)} AS {n}" for k, n in zip(engine_keys, key_names, strict=True))
    where = exp.and_(*conditions)
    partition = ", ".join([unit, *key_names])
    measure_sql = ", ".join(m.sql(duck) for m in measures)
    sql = (
        f"WITH __filtered AS (SELECT *{keys_select}, {row_hash(row).sql(duck)} AS __h "
        f"FROM {exp.to_table(name, quoted=True).sql(duck)} WHERE {where.sql(duck)}), "
        f"__capped AS (SELECT * FROM __filtered QUALIFY row_number() OVER "
        f"(PARTITION BY {partition} ORDER BY {_order(['__h', *tie_breaks(row)])}) "
        f"<= {bounds.max_rows_per_group})"
    )
    source = "__capped"
    if engine_keys:
        unit_type = dataset.columns[dataset.privacy_unit].type
        groups = [(dataset.privacy_unit, unit_type), *zip(key_names, key_kinds, strict=True)]
        sql += (
            f", __unit_groups AS (SELECT {partition} FROM (SELECT DISTINCT {partition} FROM __capped) "
            f"QUALIFY row_number() OVER (PARTITION BY {unit} "
            f"ORDER BY {_order([row_hash(groups), *tie_breaks(groups)])}) "
            f"<= {bounds.max_groups_contributed}), "
            f"__bounded AS (SELECT __capped.* FROM __capped JOIN __unit_groups USING ({partition}))"
        )
        source = "__bounded"
    keys_out = "".join(f"{n}, " for n in key_names)
    sql += f" SELECT {keys_out}{measure_sql} FROM {source}"
    if key_names:
        sql += f" GROUP BY {', '.join(key_names)}"
    parsed = snippet(sql)
    assert isinstance(parsed, exp.Select)
    return parsed


def _as_parameters(tree: exp.Select) -> exp.Select:
    """Parts built as DuckDB text parse `$n` as placeholders: the plan keeps one node for them, the
    Parameter the client's statement has, so every engine renders it in its own way."""
    for node in list(tree.find_all(exp.Placeholder)):
        if str(node.this).isdigit():
            node.replace(exp.Parameter(this=exp.Literal.number(int(node.this))))
    return tree


def _order(items: list[str | exp.Expression]) -> str:
    return ", ".join(f"{i if isinstance(i, str) else i.sql('duckdb')} NULLS LAST" for i in items)
