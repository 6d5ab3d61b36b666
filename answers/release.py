"""Turn the engine's true per-group measures into released rows: noise, then presentation.

`draw_noise` is the only step that spends privacy; `present` is post-processing of its `Answer`
(which the answer cache stores and re-serves).

Every group of the plan's public domain is released, whether or not the engine saw rows for it
(absent groups measure 0), so which groups appear never depends on the data. Each measure gets one
independent noise draw (Laplace or Gaussian, as planned) per group. A group whose noisy size is
below the policy's minimum comes back with NULL values and `suppressed = true`. Intervals use only
released values and noise parameters. ORDER BY and LIMIT run last, over released values only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from typing import Any

from answers.answer import Answer, NoisyMeasure
from privacy import intervals
from privacy.mechanisms import Mechanism, mechanism
from rewriter.plan import Aggregate, Plan, SortKey


def groups_of(plan: Plan) -> list[tuple]:
    """The plan's public groups in a fixed order (the order answers store their values in)."""
    return list(itertools.product(*(key.values for key in plan.keys)))


def draw_noise(plan: Plan, engine_columns: Sequence[str], engine_rows: Sequence[Sequence[Any]]) -> Answer:
    """One independent noise draw per measure per group: the only step that spends privacy."""
    index = {name: i for i, name in enumerate(engine_columns)}
    n_keys = len(plan.keys)
    observed = {tuple(str(v) for v in row[:n_keys]): row for row in engine_rows}
    groups = groups_of(plan)
    measures = {}
    for measure in (plan.threshold, *(m for a in plan.aggregates for m in a.measures)):
        col = index[measure.engine_column]
        truth = []
        for group in groups:
            row = observed.get(tuple(str(v) for v in group))
            truth.append(float(row[col] or 0) if row is not None else 0.0)
        noise = mechanism(measure.kind, measure.scale, measure.discrete)
        measures[measure.engine_column] = NoisyMeasure(
            noise.scale, measure.discrete, tuple(noise.release(truth)), measure.kind
        )
    return Answer(measures)


def present(plan: Plan, answer: Answer, pending: Collection[Any] = ()) -> list[tuple]:
    """Released rows from an answer: suppression, intervals, rounding, ORDER BY, LIMIT (post-processing).
    Rows of `pending` time buckets (not complete yet, never released) come back NULL and pending."""
    groups = groups_of(plan)
    bucket = plan.bucket_key

    def noised(measure_name: str) -> tuple[list[float], Mechanism]:
        stored = answer.measures[measure_name]
        return list(stored.values), mechanism(stored.kind, stored.scale, stored.discrete)

    sizes, _ = noised(plan.threshold.engine_column)
    suppressed = [size < plan.min_group_size for size in sizes]
    cells = [_release_aggregate(aggregate, noised, plan.confidence) for aggregate in plan.aggregates]

    rows = []
    for g, group in enumerate(groups):
        row: list[Any] = []
        waiting = bucket is not None and group[bucket] in pending
        for column in plan.columns:
            if column.role == "key":
                row.append(group[column.index])
            elif column.role == "pending":
                row.append(waiting)
            elif column.role == "suppressed":
                row.append(suppressed[g] and not waiting)
            elif suppressed[g] or waiting:
                row.append(None)
            else:
                value, low, high = cells[column.index][g]
                row.append({"value": value, "ci_low": low, "ci_high": high}[column.role])
        rows.append(tuple(row))
    if plan.having is not None:
        rows = [row for row in rows if plan.having.holds(row) is True]
    rows = _order(rows, plan.order_by)
    return rows[: plan.limit] if plan.limit is not None else rows


def released_sizes(plan: Plan, answer: Answer) -> tuple[tuple[float | None, ...], float]:
    """The noisy size of every public group (None when suppressed) and the sd of its noise."""
    stored = answer.measures[plan.threshold.engine_column]
    sizes = tuple(size if size >= plan.min_group_size else None for size in stored.values)
    return sizes, mechanism(stored.kind, stored.scale, stored.discrete).standard_deviation()


def release(plan: Plan, engine_columns: Sequence[str], engine_rows: Sequence[Sequence[Any]]) -> list[tuple]:
    return present(plan, draw_noise(plan, engine_columns, engine_rows))


def _release_aggregate(aggregate: Aggregate, noised, confidence: float) -> list[tuple]:  # type: ignore[no-untyped-def]
    if aggregate.function in ("count", "sum"):
        (m,) = aggregate.measures
        values, mechanism = noised(m.engine_column)
        out = []
        for v in values:
            ci = intervals.additive(v, mechanism, confidence)
            if aggregate.function == "count":
                out.append((max(0, round(v)), max(0, math.floor(ci.low)), max(0, math.ceil(ci.high))))
            else:
                half = (ci.high - ci.low) / 2
                out.append(
                    (round_to_noise(v, half), round_to_noise(ci.low, half), round_to_noise(ci.high, half))
                )
        return out
    if aggregate.function.startswith(("var", "stddev")):
        return _release_spread(aggregate, noised, confidence)
    if aggregate.function == "quantile":
        return _release_quantile(aggregate, noised, confidence)
    sum_m, count_m = aggregate.measures
    sums, sum_mech = noised(sum_m.engine_column)
    counts, count_mech = noised(count_m.engine_column)
    assert aggregate.lower is not None and aggregate.upper is not None
    out = []
    for s, c in zip(sums, counts, strict=True):
        value = min(max(aggregate.midpoint + s / max(c, 1.0), aggregate.lower), aggregate.upper)
        ci = intervals.ratio_of_centred_sum(
            s, sum_mech, c, count_mech, aggregate.midpoint, aggregate.lower, aggregate.upper, confidence
        )
        half = (ci.high - ci.low) / 2
        out.append((round_to_noise(value, half), round_to_noise(ci.low, half), round_to_noise(ci.high, half)))
    return out


def _release_spread(aggregate: Aggregate, noised, confidence: float) -> list[tuple]:  # type: ignore[no-untyped-def]
    """VARIANCE / STDDEV (sample or population) from a centred sum of squares, a centred sum, a count."""
    squares_m, sum_m, count_m = aggregate.measures
    squares, squares_mech = noised(squares_m.engine_column)
    sums, sum_mech = noised(sum_m.engine_column)
    counts, count_mech = noised(count_m.engine_column)
    assert aggregate.lower is not None and aggregate.upper is not None
    radius = (aggregate.upper - aggregate.lower) / 2
    sample = aggregate.function.endswith("samp")
    root = aggregate.function.startswith("stddev")
    out = []
    for q, s, c in zip(squares, sums, counts, strict=True):
        n = max(c, 2.0 if sample else 1.0)
        top = radius * radius * (n / (n - 1) if sample else 1.0)
        value = min(max(intervals.variance_of(max(q, 0.0), s, n, sample), 0.0), top)
        ci = intervals.variance(q, squares_mech, s, sum_mech, c, count_mech, radius, sample, confidence)
        low, high = ci.low, ci.high
        if root:
            value, low, high = math.sqrt(value), math.sqrt(low), math.sqrt(high)
        half = (high - low) / 2
        out.append((round_to_noise(value, half), round_to_noise(low, half), round_to_noise(high, half)))
    return out


def _release_quantile(aggregate: Aggregate, noised, confidence: float) -> list[tuple]:  # type: ignore[no-untyped-def]
    """A quantile read off a noisy histogram, with a conservative interval.

    With probability at least `confidence`, every noisy cumulative count (and the total) is within
    its Chernoff bound t_j of the truth (a union bound over the bins); the interval spans the bins
    that could then hold the quantile. Only released counts and the noise scale are used.
    """
    assert aggregate.lower is not None and aggregate.upper is not None and aggregate.fraction is not None
    columns = [noised(m.engine_column) for m in aggregate.measures]
    noise = columns[0][1]
    count = len(columns)
    width = (aggregate.upper - aggregate.lower) / count
    bounds = [
        intervals.sum_of_noises_bound(j, noise.scale, noise.discrete, (1 - confidence) / count)
        for j in range(1, count + 1)
    ]
    p = aggregate.fraction
    out = []
    for g in range(len(columns[0][0])):
        raw = [values[g] for values, _ in columns]
        # The noisy counts are used as drawn (negative ones too): their running sums are unbiased for
        # the true cumulative counts. Clamping them at 0 biased the quantile towards the empty side
        # (+6,900 on a 250,000-wide salary range at ε 0.1); the first bin whose running sum reaches the
        # target always has a positive count, so interpolating inside it is well defined.
        target = p * sum(raw)
        cumulative, value = 0.0, aggregate.upper
        for j, c in enumerate(raw):
            if c > 0 and cumulative + c >= target:
                value = aggregate.lower + width * (j + (target - cumulative) / c)
                break
            cumulative += c
        low_bin = _first_bin(raw, bounds, p, could=True)
        high_bin = _first_bin(raw, bounds, p, could=False)
        low = aggregate.lower + width * low_bin
        high = aggregate.lower + width * (high_bin + 1) if high_bin < count else aggregate.upper
        value = min(max(value, low), high)
        half = (high - low) / 2
        out.append((round_to_noise(value, half), round_to_noise(low, half), round_to_noise(high, half)))
    return out


def _first_bin(noisy: list[float], bounds: list[float], p: float, could: bool) -> int:
    """The first bin j whose true cumulative count could (or must) reach p times the true total."""
    total = sum(noisy)
    cumulative = 0.0
    for j, c in enumerate(noisy):
        cumulative += c
        if could and cumulative + bounds[j] >= p * (total - bounds[-1]):
            return j
        if not could and cumulative - bounds[j] >= p * (total + bounds[-1]):
            return j
    return len(noisy)


def round_to_noise(value: float, half_width: float) -> float:
    """Keep two significant digits of the interval's half-width: digits below that are pure noise.

    >>> round_to_noise(103439.68599, 1288.0)
    103400.0
    >>> round_to_noise(0.123456, 0.0123)
    0.123
    """
    if half_width <= 0 or not math.isfinite(half_width):
        return value
    digits = 1 - math.floor(math.log10(half_width))
    return round(value, digits)


def _order(rows: list[tuple], keys: Sequence[SortKey]) -> list[tuple]:
    """Stable multi-key sort with PostgreSQL's NULL placement (last ascending, first descending)."""
    for key in reversed(keys):
        present = [r for r in rows if r[key.output] is not None]
        missing = [r for r in rows if r[key.output] is None]
        present.sort(key=lambda r, k=key.output: r[k], reverse=key.descending)
        rows = missing + present if key.nulls_first else present + missing
    return rows
