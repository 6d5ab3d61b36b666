"""Decide the noise: the query's ε, its split, each measure's sensitivity, and the output schema.

Neighbouring datasets differ by adding or removing one privacy unit. The plan lets a unit touch at
most k groups with at most m rows each (k = m = 1 for one-row-per-unit datasets, k = 1 without
GROUP BY), so each measure's L1 sensitivity over the whole vector of groups is k·m rows' worth (k
for counts of units), and Laplace noise of that scale per group makes the query ε-DP for its ε.
Within a group the ε is split:
`suppression.epsilon_share` of it for the noisy group size, the rest evenly across the aggregates
(an AVG halves its share between its centred sum and its count). Sensitivities per measure:
COUNT k·m; COUNT(DISTINCT unit) and the group size k; SUM k·m·max(|lower|, |upper|); AVG's centred
sum k·m·(upper - lower) / 2 and its count k·m.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from fractions import Fraction

from sqlglot import exp

from pgerrors import FeatureNotAllowed, InvalidParameterValue
from privacy.accounting import NoiseEvent, events_of, gaussian_multiplier, pure_event
from privacy.mechanisms import mechanism
from rewriter import fixed_point
from rewriter.context import RewriteContext
from rewriter.group_keys import KeySpec, key_of
from rewriter.having import Condition, compile_having
from rewriter.plan import Aggregate, GroupKey, Measure, OutputColumn, Plan, SortKey
from rewriter.policy import Dataset
from rewriter.question import describe_question
from rewriter.rules.clip_values import THRESHOLD_MEASURE, ClippedQuery, MeasuredAggregate, deviation_bound
from rewriter.types import POLICY_TO_PG, PgType


def plan_noise(query: ClippedQuery, ctx: RewriteContext) -> Plan:
    """The plan at the session's ε, or at the smallest ε that meets `dp.target_ci_width`."""
    if ctx.target_ci_width is not None:
        plan = plan_for_width(query, ctx, ctx.target_ci_width)
    else:
        plan = _plan_at_epsilon(query, ctx)
    return replace(plan, question=describe_question(query.tree, ctx.dataset(query.dataset)))


def _plan_at_epsilon(query: ClippedQuery, ctx: RewriteContext) -> Plan:
    assert query.engine is not None, "bound_contribution runs before plan_noise"
    dataset = ctx.dataset(query.dataset)
    epsilon = _query_epsilon(ctx, query.dataset)
    confidence = ctx.confidence if ctx.confidence is not None else dataset.query.confidence

    where = query.tree.args.get("where")
    condition = where.this if where is not None else None
    bucketing = query.tree.meta.get("bucketing")  # rewriter.rules.bucket_time_range
    stated = (bucketing.start, bucketing.end) if bucketing is not None else None
    domains = [
        key.domain(dataset, dataset.max_groups + 1, condition,
                   stated if bucketing is not None and key.key == bucketing.key else None)
        for key, _ in query.keys
    ]  # fmt: skip
    domain_size = 1
    for domain in domains:
        domain_size *= len(domain)
    if domain_size > dataset.max_groups:
        raise FeatureNotAllowed(
            f"this GROUP BY would release more than {dataset.max_groups} groups, the most the policy allows",
            hint="Group by fewer columns, or by a coarser time bucket ('month' instead of 'day').",
        )

    total = Fraction(str(epsilon))
    share = Fraction(str(dataset.suppression.epsilon_share)) if query.aggregates else Fraction(1)
    # One unit touches at most k groups (k = 1 without GROUP BY) with at most m rows in each, so the
    # L1 sensitivity of a measure over all groups is k·m times a single row's (k for unit counts).
    bounds = dataset.bounds()
    k = bounds.max_groups_contributed if query.keys else 1
    m = bounds.max_rows_per_group
    threshold = Measure(THRESHOLD_MEASURE, float(k), _float_down(total * share), discrete=True)
    per_aggregate = total * (1 - share) / len(query.aggregates) if query.aggregates else Fraction(0)
    aggregates = tuple(_noised(a, per_aggregate, k, m) for a in query.aggregates)
    threshold, aggregates, delta, events = _choose_mechanism(
        ctx, query.dataset, dataset, epsilon, k, threshold, aggregates
    )

    keys = tuple(
        GroupKey(
            position,
            key.column,
            _key_type(key, dataset, domain),
            domain,
            key.key,
        )
        for (key, position), domain in zip(query.keys, domains, strict=True)
    )
    columns: list[OutputColumn] = []
    by_name: dict[str, int] = {}
    for name, role, index in query.outputs:
        by_name.setdefault(name, len(columns))
        if role == "key":
            columns.append(OutputColumn(name, keys[index].pg_type, "key", index))
            continue
        pg_type = aggregates[index].pg_type
        columns.append(OutputColumn(name, pg_type, "value", index))
        columns.append(OutputColumn(f"{name}_ci_low", pg_type, "ci_low", index))
        columns.append(OutputColumn(f"{name}_ci_high", pg_type, "ci_high", index))
    if bucketing is not None and dataset.append_only and dataset.append_only.column == bucketing.column:
        columns.append(OutputColumn("pending", "bool", "pending"))  # not complete yet: NULL, free
    columns.append(OutputColumn("suppressed", "bool", "suppressed"))

    engine_sql = query.engine.sql(dialect="duckdb")
    return Plan(
        dataset=query.dataset,
        engine_sql=engine_sql,
        engine_query=query.engine,
        # the client's parameters only: a bucketed question's range ($a, $b) is bound by the proxy
        parameter_types=query.parameter_types[: bucketing.parameters[0] - 1]
        if bucketing
        else query.parameter_types,
        bucketing=bucketing,
        keys=keys,
        aggregates=aggregates,
        threshold=threshold,
        min_group_size=dataset.suppression.min_group_size,
        epsilon=epsilon,
        cost=total,
        confidence=confidence,
        columns=tuple(columns),
        order_by=_sort_keys(query, columns, by_name),
        having=_having(query, columns),
        delta=delta,
        events=events,
        limit=_limit(query.tree),
        fingerprint=hashlib.sha256(f"{engine_sql}|{epsilon!r}".encode()).hexdigest()[:16],
    )


def plan_for_width(query: ClippedQuery, ctx: RewriteContext, width: float) -> Plan:
    """The plan at the smallest ε (3 significant digits, within policy limits) at which every COUNT
    and SUM interval is at most `width` wide; refuse when even the largest ε cannot reach it."""
    limits = ctx.dataset(query.dataset).query
    if (
        any(a.function not in ("count", "count_units", "sum") for a in query.aggregates)
        or not query.aggregates
    ):
        raise FeatureNotAllowed(
            "dp.target_ci_width applies to COUNT and SUM; the width of averages and spreads depends on "
            "group sizes",
            hint="Use EXPLAIN to see their widths by group size, then SET dp.epsilon.",
        )

    def plan_at(epsilon: float) -> Plan:
        return _plan_at_epsilon(query, replace(ctx, epsilon=epsilon, target_ci_width=None))

    def widest(plan: Plan) -> float:
        alpha = 1 - plan.confidence
        return max(
            2 * mechanism(m.kind, m.scale, m.discrete).half_width(alpha)
            for a in plan.aggregates
            for m in a.measures
        )

    best = plan_at(limits.max_epsilon)
    if widest(best) > width:
        raise FeatureNotAllowed(
            f"an interval width of {width:g} needs more ε than this dataset allows per query "
            f"({limits.max_epsilon:g} gives ± {widest(best) / 2:.4g})",
            hint="Ask for a wider interval (SET dp.target_ci_width = ...) or a coarser question.",
        )
    low, high = limits.min_epsilon, limits.max_epsilon
    for _ in range(40):
        middle = (low + high) / 2
        if widest(plan_at(middle)) <= width:
            high = middle
        else:
            low = middle
    chosen = min(float(f"{high:.3g}"), limits.max_epsilon)
    if widest(plan_at(chosen)) > width:  # rounding to 3 digits went below the threshold: step up
        chosen = min(
            float(f"{high * 1.001:.3g}") + 10 ** (math.floor(math.log10(high)) - 2), limits.max_epsilon
        )
    return plan_at(max(chosen, limits.min_epsilon))


def _key_type(key: KeySpec, dataset: Dataset, domain: tuple) -> PgType:  # type: ignore[type-arg]
    if key.part is not None:
        return "numeric"  # PostgreSQL's EXTRACT
    if key.seconds is not None:
        return "float8"  # floor(...) * n
    if key.unit is not None:
        return "date" if key.as_date else "timestamp"
    if key.bins is not None:
        return "int4"
    if key.labels is not None:
        return "text" if domain and isinstance(domain[0], str) else "float8"
    return POLICY_TO_PG[dataset.columns[key.column].type]


def _choose_mechanism(
    ctx: RewriteContext,
    name: str,
    dataset: Dataset,
    epsilon: float,
    k: int,
    threshold: Measure,
    aggregates: tuple[Aggregate, ...],
) -> tuple[Measure, tuple[Aggregate, ...], float, tuple[NoiseEvent, ...]]:
    """Laplace as planned, or Gaussian noise calibrated by the RDP accountant for the query's (ε, δ).

    Gaussian noise is scaled to L2 sensitivity: a unit moves at most k groups, so L2 = L1 / √k.
    Every measure gets the same noise multiplier z, chosen so that all of them together compose to
    exactly the query's (ε, δ) under the accountant that will charge it.
    """
    kind = ctx.mechanism or dataset.query.mechanism
    if kind == "gaussian" and dataset.budget.delta is None:
        raise FeatureNotAllowed(
            f'dataset "{name}" has a pure ε budget: Gaussian noise needs a δ',
            hint="SET dp.mechanism = laplace, or ask an admin to give the dataset an (ε, δ) budget.",
        )
    measures = [threshold, *(m for a in aggregates for m in a.measures)]
    if kind != "gaussian":
        events = _laplace_events(measures, k, dataset) if dataset.budget.delta is not None else ()
        return threshold, aggregates, 0.0, events
    if any(a.function == "quantile" for a in aggregates):
        raise FeatureNotAllowed("quantiles use Laplace noise", hint="SET dp.mechanism = laplace")
    delta = ctx.delta if ctx.delta is not None else dataset.query.default_delta
    if dataset.budget.delta is not None and delta > dataset.budget.delta:
        raise InvalidParameterValue(
            f"dp.delta = {delta:g} is above the dataset's δ budget {dataset.budget.delta:g}",
            hint=f"Choose a δ below {dataset.budget.delta:g}.",
        )
    z = gaussian_multiplier(len(measures), epsilon, delta)
    share = epsilon / len(measures)

    def gaussian(m: Measure) -> Measure:
        l2 = m.sensitivity / math.sqrt(k)
        return Measure(m.engine_column, l2, share, m.discrete, "gaussian", z * l2)

    converted = tuple(
        Aggregate(a.name, a.function, tuple(gaussian(m) for m in a.measures), a.pg_type, a.lower, a.upper)
        for a in aggregates
    )
    noised = [gaussian(threshold), *(m for a in converted for m in a.measures)]
    events = tuple(
        e for m in noised for e in events_of("gaussian", m.discrete, m.scale, m.sensitivity / math.sqrt(k), k)
    )
    return gaussian(threshold), converted, delta, events


def _laplace_events(measures: list[Measure], k: int, dataset: Dataset) -> tuple[NoiseEvent, ...]:
    """Every noise draw as an event (privacy.accounting): a unit moves at most k groups of a measure,
    each by at most Δ₁ / k. A histogram's bins are one vector a unit's rows may spread over freely:
    one discrete Laplace event when a unit has a single row, else its pure-ε bound."""
    rows = k * dataset.bounds().max_rows_per_group
    events: list[NoiseEvent] = []
    histograms: dict[str, Measure] = {}
    for m in measures:
        if m.vector:
            histograms.setdefault(m.vector, m)
        else:
            events += events_of("laplace", m.discrete, m.scale, m.sensitivity / k, k)
    for m in histograms.values():
        events += (
            events_of("laplace", True, m.scale, 1, 1) if rows == 1 else [pure_event(m.scale, m.sensitivity)]
        )
    return tuple(events)


def _query_epsilon(ctx: RewriteContext, dataset_name: str) -> float:
    limits = ctx.dataset(dataset_name).query
    epsilon = ctx.epsilon if ctx.epsilon is not None else limits.default_epsilon
    if not limits.min_epsilon <= epsilon <= limits.max_epsilon:
        raise InvalidParameterValue(
            f'dp.epsilon = {epsilon:g} is outside what the policy allows on dataset "{dataset_name}"',
            hint=f"Choose a value from {limits.min_epsilon:g} to {limits.max_epsilon:g}.",
        )
    return epsilon


def _float_down(value: Fraction) -> float:
    """The largest float not above `value`: noise is calibrated to at most the ε that is charged."""
    as_float = float(value)
    return math.nextafter(as_float, 0.0) if Fraction(as_float) > value else as_float


def _noised(aggregate: MeasuredAggregate, share: Fraction, k: int, m: int) -> Aggregate:
    column = aggregate.column
    epsilon = _float_down(share)
    half = _float_down(share / 2)
    rows = float(k * m)  # how many rows of one unit a query can see
    if aggregate.function == "count_units":
        (measure,) = aggregate.measures
        return Aggregate(aggregate.name, "count", (Measure(measure, float(k), epsilon, True),), "int8")
    if aggregate.function == "count":
        (measure,) = aggregate.measures
        return Aggregate(aggregate.name, "count", (Measure(measure, rows, epsilon, True),), "int8")
    assert column is not None and column.lower is not None and column.upper is not None
    lower, upper = column.lower, column.upper
    # Sums are exact sums of values rounded to the column's resolution (rewriter.fixed_point): a
    # centred value is within `deviation_bound` of the midpoint; the final rounding adds FINAL_ROUNDING.
    slack = 1 + fixed_point.FINAL_ROUNDING
    radius = deviation_bound(column)
    if aggregate.function == "sum":
        (measure,) = aggregate.measures
        sensitivity = rows * max(abs(lower), abs(upper)) * slack
        return Aggregate(
            aggregate.name, "sum", (Measure(measure, sensitivity, epsilon, False),), "float8", lower, upper
        )
    if aggregate.function.startswith("quantile:"):  # one histogram: a row lands in exactly one bin
        fraction = float(aggregate.function.split(":", 1)[1])
        vector = aggregate.measures[0]  # an engine column: unique per aggregate (output names may repeat)
        bins = tuple(Measure(b, rows, epsilon, True, vector=vector) for b in aggregate.measures)
        return Aggregate(aggregate.name, "quantile", bins, "float8", lower, upper, fraction)
    if aggregate.function.startswith(("var", "stddev")):
        squares, centred_sum, count = aggregate.measures
        third = _float_down(share / 3)
        return Aggregate(
            aggregate.name,
            aggregate.function,  # type: ignore[arg-type]
            (
                Measure(squares, rows * radius * radius * slack, third, False),
                Measure(centred_sum, rows * radius * slack, third, False),
                Measure(count, rows, third, True),
            ),
            "float8",
            lower,
            upper,
        )
    centred_sum, count = aggregate.measures
    return Aggregate(
        aggregate.name,
        "avg",
        (
            Measure(centred_sum, rows * radius * slack, half, False),
            Measure(count, rows, half, True),
        ),
        "float8",
        lower,
        upper,
    )


def _sort_keys(
    query: ClippedQuery, columns: list[OutputColumn], by_name: dict[str, int]
) -> tuple[SortKey, ...]:
    order = query.tree.args.get("order")
    if order is None:
        return ()
    keys = []
    for ordered in order.expressions:
        column = ordered.this
        if column.table:  # a group-by column, referred to by its source name
            target = next(
                (
                    i
                    for i, c in enumerate(columns)
                    if c.role == "key" and query.keys[c.index][0] == column.name
                ),
                None,
            )
        else:
            target = by_name.get(column.name)
        if target is None:
            raise FeatureNotAllowed(
                f'ORDER BY "{column.name}" needs that column in the select list',
                hint="Select the column you order by.",
            )
        descending = bool(ordered.args.get("desc"))
        nulls_first = ordered.args.get("nulls_first")
        keys.append(SortKey(target, descending, descending if nulls_first is None else bool(nulls_first)))
    return tuple(keys)


def _having(query: ClippedQuery, columns: list[OutputColumn]) -> Condition | None:
    having = query.tree.args.get("having")
    if having is None:
        return None
    value_of: dict[str, int] = {}
    for item, (name, role, index) in zip(query.tree.expressions, query.outputs, strict=True):
        role_name = "key" if role == "key" else "value"
        target = next(
            i for i, c in enumerate(columns) if c.role == role_name and c.index == index and c.name == name
        )
        value_of.setdefault(key_of(item.this), target)

    def output_of(node: exp.Expression) -> int | None:
        if isinstance(node, exp.Column) and not node.table:  # an output alias
            return next(
                (i for i, c in enumerate(columns) if c.name == node.name and c.role in ("key", "value")), None
            )
        return value_of.get(key_of(node))

    return compile_having(having.this, output_of)


def _limit(tree: exp.Select) -> int | None:
    limit = tree.args.get("limit")
    return int(limit.expression.this) if limit is not None else None
