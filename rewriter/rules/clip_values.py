"""Build the engine query from the checked tree: clipped measures per public group.

Every aggregated value is clipped to the column's declared [lower, upper] inside the engine, so one
row moves a sum by at most max(|lower|, |upper|) and a centred sum by (upper - lower) / 2. AVG is
measured as a centred sum Σ(x - midpoint) and a count. Every group also measures its row count for
the noisy suppression threshold. Rows whose group value is outside the declared public domain are
filtered out, so the set of released groups is exactly the declared domain.

The engine SQL is generated here from sqlglot nodes; client text never reaches the engine. `$n`
parameters are cast to the type inferred for them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlglot import exp

from rewriter import fixed_point
from rewriter.context import RewriteContext
from rewriter.group_keys import KeySpec, group_keys, key_of
from rewriter.policy import Column, Dataset
from rewriter.snippets import snippet
from rewriter.tree import aggregate_name, dataset_name, parameter_index, parameters, quantile_parts
from rewriter.types import PG_TO_DUCKDB, POLICY_TO_PG, PgType

THRESHOLD_MEASURE = "__rows"
QUANTILE_BINS = 64  # quantiles come from a noisy histogram with this many equal bins over the bounds


def quantile_edges(lower: float, upper: float) -> list[float]:
    return [lower + (upper - lower) * j / QUANTILE_BINS for j in range(QUANTILE_BINS + 1)]


@dataclass(frozen=True)
class MeasuredAggregate:
    name: str
    function: str  # count | count_units | sum | avg | var_samp | var_pop | stddev_samp | stddev_pop
    column: Column | None  # None for COUNT(*)
    measures: tuple[str, ...]  # engine columns: (value,) or, for avg, (centred_sum, count)


@dataclass(frozen=True)
class EngineParts:
    """What the engine query is made of, before contribution bounding decides its shape."""

    keys: tuple[exp.Expression, ...]  # engine expressions of the group keys (output as __k0, __k1, ...)
    key_kinds: tuple[str, ...]  # the policy type of each key's value (how the row hash renders it)
    conditions: tuple[exp.Expression, ...]  # row filters, ANDed: WHERE and the ranges of bucketed keys
    group_domains: tuple[exp.Expression, ...]  # `key IN (declared values)` of plain keys, ANDed
    measures: tuple[exp.Expression, ...]  # aliased clipped measures, after the group size (__rows)


@dataclass(frozen=True)
class ClippedQuery:
    dataset: str
    parts: EngineParts
    keys: tuple[tuple[KeySpec, int | None], ...]  # (group key, select-list position or None)
    aggregates: tuple[MeasuredAggregate, ...]
    outputs: tuple[tuple[str, str, int], ...]  # (name, "key"|"aggregate", index) in select order
    parameter_types: tuple[PgType, ...]
    tree: exp.Select  # the checked user tree, for ORDER BY and LIMIT
    engine: exp.Select | None = None  # set by bound_contribution


def clip_values(tree: exp.Select, ctx: RewriteContext) -> ClippedQuery:
    name = dataset_name(tree)
    dataset = ctx.dataset(name)
    keys = group_keys(tree, dataset, name)
    key_index = {key.key: i for i, key in enumerate(keys)}

    outputs: list[tuple[str, str, int]] = []
    key_positions: dict[int, int] = {}
    aggregates: list[MeasuredAggregate] = []
    measures: list[exp.Expression] = []
    for position, item in enumerate(tree.expressions):
        value = item.this
        if key_of(value) in key_index:
            index = key_index[key_of(value)]
            outputs.append((item.alias, "key", index))
            key_positions.setdefault(index, position)
            continue
        index = len(aggregates)
        aggregate, engine_columns = _measure(index, item.alias, value, dataset)
        aggregates.append(aggregate)
        measures.extend(engine_columns)
        outputs.append((item.alias, "aggregate", index))

    parameter_types = _parameter_types(tree, dataset, ctx)
    engine_keys = [_engine_key(key, parameter_types, dataset) for key in keys]
    conditions = (
        [_engine_where(tree.args["where"].this, parameter_types, dataset)] if tree.args.get("where") else []
    )
    domains: list[exp.Expression] = []  # plain keys' value lists: they hold for whole groups
    for key, engine_key in zip(keys, engine_keys, strict=True):
        if key.labels is not None:
            conditions.append(exp.Not(this=exp.Is(this=engine_key.copy(), expression=exp.Null())))
        elif key.bins is None and not key.is_time:
            domains.append(_in_domain(key, dataset.columns[key.column]))
        else:  # buckets of a range: rows outside the range must not reach an edge bucket
            conditions.append(_in_domain(key, dataset.columns[key.column]))
    parts = EngineParts(
        keys=tuple(engine_keys),
        key_kinds=tuple(_key_kind(key, dataset) for key in keys),
        conditions=tuple(conditions),
        group_domains=tuple(domains),
        measures=tuple(measures),
    )
    return ClippedQuery(
        dataset=name,
        parts=parts,
        keys=tuple((key, key_positions.get(i)) for i, key in enumerate(keys)),
        aggregates=tuple(aggregates),
        outputs=tuple(outputs),
        parameter_types=parameter_types,
        tree=tree,
    )


def _key_kind(key: KeySpec, dataset: Dataset) -> str:
    """The policy type of a group key's engine value (what `row_hash` renders it as)."""
    if key.labels is not None:
        return "text" if isinstance(key.labels[0], str) else "double"
    if key.bins is not None or key.part is not None:
        return "bigint"
    if key.seconds is not None:
        return "double"
    if key.unit is not None:
        return "date" if key.as_date else "timestamp"
    return dataset.columns[key.column].type


def _engine_key(key: KeySpec, parameter_types: tuple[PgType, ...], dataset: Dataset) -> exp.Expression:
    if key.labels is not None:  # CASE: each WHEN regenerated like WHERE (values TRY_CAST)
        case = key.expression
        assert isinstance(case, exp.Case)
        numeric = not isinstance(key.labels[0], str)

        def label(node: exp.Expression) -> exp.Expression:
            # Numeric labels are the domain's floats: the engine must produce the same values.
            return exp.cast(node.copy(), "DOUBLE") if numeric else node.copy()

        ifs = [
            exp.If(this=_engine_where(branch.this, parameter_types, dataset), true=label(branch.args["true"]))
            for branch in case.args.get("ifs") or []
        ]
        default = case.args.get("default")
        return exp.Case(ifs=ifs, default=label(default) if default is not None else None)
    if key.bins is not None:  # width_bucket, which DuckDB lacks, as PostgreSQL defines it
        return _width_bucket(_col(key.column).sql("duckdb"), *key.bins)
    if key.seconds is not None:  # epoch-second buckets, as doubles (what PostgreSQL's floor gives)
        epoch = exp.Extract(this=exp.var("EPOCH"), expression=exp.cast(_col(key.column), "TIMESTAMP"))
        width = exp.Literal.number(key.seconds)
        bucket = exp.Mul(this=exp.Floor(this=exp.Div(this=epoch, expression=width)), expression=width.copy())
        return exp.cast(bucket, "DOUBLE")
    if key.part is not None:  # dow as isodow % 7: the one spelling every engine agrees on
        part = "ISODOW" if key.part == "dow" else key.part.upper()
        value: exp.Expression = exp.Extract(this=exp.var(part), expression=_col(key.column))
        if key.part == "dow":
            value = exp.Mod(this=value, expression=exp.Literal.number(7))
        return exp.cast(value, "BIGINT")
    if key.unit is None:
        return _col(key.column)
    truncated = exp.Anonymous(this="date_trunc", expressions=[exp.Literal.string(key.unit), _col(key.column)])
    return exp.cast(truncated, "DATE" if key.as_date else "TIMESTAMP")


def _width_bucket(column: str, low: float, high: float, count: int) -> exp.Expression:
    """Total on every row: `group_keys` checked that low, high and high - low are finite, so the
    ratio below is in [0, 1); NaN sorts above every number in DuckDB and lands in the top bucket, as
    +inf does; the cast cannot fail, and rounding at the edge is kept inside 1..count."""
    ratio = f"(CAST({column} AS DOUBLE) - {low!r}) / {high - low!r}"
    sql = (
        f"CASE WHEN {column} < {low!r} THEN 0 WHEN {column} >= {high!r} THEN {count + 1} "
        f"ELSE LEAST({count}, GREATEST(1, TRY_CAST(floor({ratio} * {count}) AS INTEGER) + 1)) END"
    )
    return snippet(sql)


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _clipped(column_name: str, column: Column) -> exp.Expression:
    """CASE keeps NULL as NULL (GREATEST/LEAST would turn it into a bound); NaN clips to upper."""
    assert column.lower is not None and column.upper is not None
    col = _col(column_name)
    return exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=col.copy(), expression=_num(column.lower)), true=_num(column.lower)),
            exp.If(this=exp.GT(this=col.copy(), expression=_num(column.upper)), true=_num(column.upper)),
        ],
        default=exp.cast(col.copy(), "DOUBLE"),
    )


def _num(value: float) -> exp.Expression:
    return exp.cast(exp.Literal.number(repr(float(value))), "DOUBLE")


def _sql(value: exp.Expression) -> str:
    return value.sql("duckdb")


@dataclass(frozen=True)
class _Scaled:
    """A column clipped and rounded to multiples of 2^-f, as BIGINT SQL (NULL stays NULL)."""

    sql: str
    f: int
    midpoint: int  # round(midpoint · 2^f)

    def total(self, values: str, f: int | None = None) -> exp.Expression:
        """SUM of BIGINT `values` (exact, any order), back to real units."""
        unit = 2.0 ** -(self.f if f is None else f)
        return snippet(f"CAST(SUM({values}) AS DOUBLE) * {unit!r}")

    def centred_total(self, column_name: str) -> exp.Expression:
        """Σ (value - midpoint), exact: the midpoint is taken off once per group, as
        SUM(values) - midpoint · COUNT(column) in 38-digit integers (a value is NULL exactly when the
        column is), not once per row (a checked BIGINT subtraction per row cost a third of the sum)."""
        unit = 2.0**-self.f
        column = exp.column(column_name, quoted=True).sql("duckdb")
        return snippet(
            f"CAST(SUM({self.sql}) - CAST({self.midpoint} AS DECIMAL(38, 0)) * COUNT({column}) AS DOUBLE) "
            f"* {unit!r}"
        )


def _scaled(column_name: str, column: Column) -> _Scaled:
    """The value clipped to [lower, upper] as a double, then rounded half-up to a multiple of 2^-f:
    every result lies in [floor(lower·2^f + 0.5), floor(upper·2^f + 0.5)] · 2^-f, within half a step
    (2^-f-1, at most 2^-61 of the larger bound) of the declared bounds, which the sensitivities' slack
    (`fixed_point.FINAL_ROUNDING`) covers. NULL stays NULL; NaN and +inf clip to upper, -inf to lower;
    no cast can fail (|value · 2^f| <= 2^60). Clipping before scaling keeps it to one CASE per row."""
    assert column.lower is not None and column.upper is not None
    f = fixed_point.exponent(max(abs(column.lower), abs(column.upper)))
    scale = 2.0**f
    sql = f"CAST(floor({_sql(_clipped(column_name, column))} * {scale!r} + 0.5) AS BIGINT)"
    return _Scaled(sql, f, round((column.lower + column.upper) / 2 * scale))


def _centred_squares(scaled: _Scaled, column: Column) -> exp.Expression:
    """Σ (x - midpoint)², each square rounded to multiples of 2^-g and capped at the bound used for
    its sensitivity (`deviation_bound(column)`²), summed exactly."""
    assert column.lower is not None and column.upper is not None
    bound = deviation_bound(column) ** 2
    g = fixed_point.exponent(bound)
    cap = math.floor(bound * 2.0**g)
    deviation = f"CAST({scaled.sql} - {scaled.midpoint} AS DOUBLE)"
    square = (
        f"CASE WHEN {scaled.sql} IS NULL THEN NULL ELSE LEAST({cap}, "
        f"CAST(floor({deviation} * {deviation} * {2.0 ** (g - 2 * scaled.f)!r} + 0.5) AS BIGINT)) END"
    )
    return scaled.total(square, g)


def deviation_bound(column: Column) -> float:
    """The most a rounded value can differ from the rounded midpoint: (upper - lower) / 2 plus one step."""
    assert column.lower is not None and column.upper is not None
    radius = (column.upper - column.lower) / 2
    return radius + fixed_point.resolution(max(abs(column.lower), abs(column.upper)))


def _measure(
    index: int, name: str, value: exp.Expression, dataset: Dataset
) -> tuple[MeasuredAggregate, list[exp.Expression]]:
    function = aggregate_name(value)
    assert function is not None
    argument = value.this
    parts = quantile_parts(value)
    if parts is not None:  # a noisy histogram of the clipped values over the declared bounds
        fraction, argument = parts
        column = dataset.columns[argument.name]
        assert column.lower is not None and column.upper is not None
        clipped = _clipped(argument.name, column)
        edges = quantile_edges(column.lower, column.upper)
        names = tuple(f"__m{index}b{j}" for j in range(QUANTILE_BINS))
        bins = []
        for j, name_j in enumerate(names):
            inside = exp.and_(
                exp.GTE(this=clipped.copy(), expression=_num(edges[j])),
                exp.LTE(this=clipped.copy(), expression=_num(edges[j + 1]))
                if j == QUANTILE_BINS - 1
                else exp.LT(this=clipped.copy(), expression=_num(edges[j + 1])),
            )
            bins.append(
                exp.alias_(
                    exp.Count(this=exp.Case(ifs=[exp.If(this=inside, true=exp.Literal.number(1))])), name_j
                )
            )
        return MeasuredAggregate(name, f"quantile:{fraction!r}", column, names), bins
    if isinstance(argument, exp.Star):
        return MeasuredAggregate(name, "count", None, (f"__m{index}",)), [
            exp.alias_(exp.Count(this=exp.Star()), f"__m{index}")
        ]
    if isinstance(argument, exp.Distinct):  # COUNT(DISTINCT unit): check_column_access allows only that
        unit = argument.expressions[0].name
        return MeasuredAggregate(name, "count_units", dataset.columns[unit], (f"__m{index}",)), [
            exp.alias_(exp.Count(this=exp.Distinct(expressions=[_col(unit)])), f"__m{index}")
        ]
    column = dataset.columns[argument.name]
    if function == "count":
        expr: exp.Expression = exp.Count(this=_col(argument.name))
        return MeasuredAggregate(name, "count", column, (f"__m{index}",)), [exp.alias_(expr, f"__m{index}")]
    scaled = _scaled(argument.name, column)
    if function == "sum":
        return MeasuredAggregate(name, "sum", column, (f"__m{index}",)), [
            exp.alias_(scaled.total(scaled.sql), f"__m{index}")
        ]
    centred = scaled.centred_total(argument.name)
    if function.startswith(("var", "stddev")):  # centred sum of squares, centred sum, count
        names = (f"__m{index}q", f"__m{index}s", f"__m{index}c")
        return MeasuredAggregate(name, function, column, names), [
            exp.alias_(_centred_squares(scaled, column), names[0]),
            exp.alias_(centred, names[1]),
            exp.alias_(exp.Count(this=_col(argument.name)), names[2]),
        ]
    return MeasuredAggregate(name, "avg", column, (f"__m{index}s", f"__m{index}c")), [
        exp.alias_(centred, f"__m{index}s"),
        exp.alias_(exp.Count(this=_col(argument.name)), f"__m{index}c"),
    ]


def _in_domain(key: KeySpec, column: Column) -> exp.Expression:
    """Rows outside the key's public domain never reach a group."""
    if key.bins is not None:  # every value has a bucket; only NULLs have none
        return exp.Not(this=exp.Is(this=_col(key.column), expression=exp.Null()))
    if key.is_time:
        assert column.earliest is not None and column.latest is not None
        after_last = column.latest + dt.timedelta(days=1)
        return exp.and_(
            exp.GTE(
                this=_col(key.column),
                expression=exp.cast(exp.Literal.string(str(column.earliest)), "TIMESTAMP"),
            ),
            exp.LT(
                this=_col(key.column), expression=exp.cast(exp.Literal.string(str(after_last)), "TIMESTAMP")
            ),
        )
    assert column.group_by_values is not None
    return exp.In(
        this=_col(key.column), expressions=[_literal(v, column.type) for v in column.group_by_values]
    )


def _literal(value: str | int | bool, column_type: str) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if column_type in ("bigint", "integer", "double") and not isinstance(value, str):
        return exp.Literal.number(value)
    literal = exp.Literal.string(str(value))
    if column_type in ("date", "timestamp"):
        return exp.cast(literal, column_type.upper())
    return literal


def _engine_where(
    condition: exp.Expression, parameter_types: tuple[PgType, ...], dataset: Dataset
) -> exp.Expression:
    """Regenerate WHERE: bare quoted columns; every value TRY_CAST to its column's type.

    `restrict_filters` guarantees each value sits beside exactly one column, so no comparison ever
    casts a column and no filter can fail at run time on any data.
    """

    def typed(value: exp.Expression, column: exp.Column) -> exp.Expression:
        column_type = dataset.columns[column.name].type
        engine_type = PG_TO_DUCKDB[POLICY_TO_PG[column_type]]
        if column_type in INTEGER_RANGES and not _fits_integer(value, INTEGER_RANGES[column_type]):
            engine_type = "DOUBLE"  # `age > 30.5` compares in the literal's precision, never rounded
        return exp.TryCast(this=_value(value), to=exp.DataType.build(engine_type))

    def _value(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter):
            pg_type = parameter_types[parameter_index(node)]
            return exp.TryCast(
                this=exp.Parameter(this=node.this.copy()), to=exp.DataType.build(PG_TO_DUCKDB[pg_type])
            )
        if isinstance(node, exp.Cast):
            return exp.TryCast(this=_value(node.this), to=node.to.copy())
        if isinstance(node, (exp.Paren, exp.Neg)):
            return node.__class__(this=_value(node.this))
        return node.copy()

    def rebuilt(node: exp.Expression, **children: exp.Expression | list[exp.Expression]) -> exp.Expression:
        """A copy of `node` with new children; other arguments (such as `negate`) are kept."""
        copy = node.copy()
        for key, child in children.items():
            copy.set(key, child)
        return copy

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.And, exp.Or)):
            return rebuilt(node, this=rewrite(node.this), expression=rewrite(node.expression))
        if isinstance(node, (exp.Not, exp.Paren)):
            return rebuilt(node, this=rewrite(node.this))
        if isinstance(node, exp.Column):
            return _col(node.name)
        if isinstance(node, exp.Boolean):
            return node.copy()
        column = node.this if isinstance(node.this, exp.Column) else node.expression
        assert isinstance(column, exp.Column), f"restrict_filters let through {node.key}"
        if isinstance(node, exp.Between):
            return rebuilt(
                node,
                this=_col(column.name),
                low=typed(node.args["low"], column),
                high=typed(node.args["high"], column),
            )
        if isinstance(node, exp.In):
            return rebuilt(
                node, this=_col(column.name), expressions=[typed(v, column) for v in node.expressions]
            )
        if isinstance(node, exp.Is):
            return rebuilt(node, this=_col(column.name), expression=exp.Null())
        assert isinstance(node, exp.Binary), f"restrict_filters let through {node.key}"
        if node.this is column:  # comparisons, LIKE, ILIKE: one side is the column
            return rebuilt(node, this=_col(column.name), expression=typed(node.expression, column))
        return rebuilt(node, this=typed(node.this, column), expression=_col(column.name))

    return rewrite(condition)


INTEGER_RANGES = {"integer": 2**31, "bigint": 2**63}


def _fits_integer(value: exp.Expression, limit: int) -> bool:
    """False for a numeric literal that is fractional or outside the column type's range."""
    while isinstance(value, (exp.Paren, exp.Neg)):
        value = value.this
    if not (isinstance(value, exp.Literal) and not value.is_string):
        return True
    try:
        number = float(value.this)
    except ValueError:
        return True
    return number.is_integer() and -limit <= number < limit


def _parameter_types(tree: exp.Select, dataset: Dataset, ctx: RewriteContext) -> tuple[PgType, ...]:
    found = parameters(tree)
    if not found:
        return ()
    count = max(parameter_index(p) for p in found) + 1
    types: list[PgType] = []
    for i in range(count):
        declared = ctx.declared_parameter_types[i] if i < len(ctx.declared_parameter_types) else None
        types.append(declared or "text")  # type: ignore[arg-type]
    for p in found:
        i = parameter_index(p)
        declared = ctx.declared_parameter_types[i] if i < len(ctx.declared_parameter_types) else None
        inferred = _type_from_context(p, dataset)
        if not declared and inferred:
            types[i] = inferred
    return tuple(types)


def _type_from_context(parameter: exp.Parameter, dataset: Dataset) -> PgType | None:
    """A parameter compared with a column takes the column's type."""
    parent = parameter.parent
    if isinstance(parent, (exp.In, exp.Between)):
        other = parent.this
    elif isinstance(parent, exp.Binary):
        other = parent.expression if parent.this is parameter else parent.this
    else:
        return None
    if isinstance(other, exp.Column) and other.name in dataset.columns:
        return POLICY_TO_PG[dataset.columns[other.name].type]
    return None
