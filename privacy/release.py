"""Turn the engine's true per-group measures into released rows: noise, suppression, intervals.

Every group of the plan's public domain is released, whether or not the engine saw rows for it
(absent groups measure 0), so which groups appear never depends on the data. Each measure gets one
independent Laplace draw per group. A group whose noisy size is below the policy's minimum comes
back with NULL values and `suppressed = true`. Intervals use only released values and noise
parameters. ORDER BY and LIMIT run last, over released values only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from privacy import intervals
from privacy.mechanisms import Laplace
from rewriter.plan import Aggregate, Plan, SortKey


def release(plan: Plan, engine_columns: Sequence[str], engine_rows: Sequence[Sequence[Any]]) -> list[tuple]:
    index = {name: i for i, name in enumerate(engine_columns)}
    n_keys = len(plan.keys)
    observed = {tuple(str(v) for v in row[:n_keys]): row for row in engine_rows}
    groups = list(itertools.product(*(key.values for key in plan.keys)))

    def measured(engine_column: str) -> list[float]:
        col = index[engine_column]
        values = []
        for group in groups:
            row = observed.get(tuple(str(v) for v in group))
            values.append(float(row[col] or 0) if row is not None else 0.0)
        return values

    def noised(
        measure_name: str, sensitivity: float, epsilon: float, discrete: bool
    ) -> tuple[list[float], Laplace]:
        mechanism = Laplace.calibrate(sensitivity, epsilon, discrete)
        return mechanism.release(measured(measure_name)), mechanism

    t = plan.threshold
    sizes, _ = noised(t.engine_column, t.sensitivity, t.epsilon, t.discrete)
    suppressed = [size < plan.min_group_size for size in sizes]

    cells: list[list[tuple[Any, Any, Any]]] = []  # per aggregate, per group: (value, low, high)
    for aggregate in plan.aggregates:
        cells.append(_release_aggregate(aggregate, noised, plan.confidence, len(groups)))

    rows = []
    for g, group in enumerate(groups):
        row: list[Any] = []
        for column in plan.columns:
            if column.role == "key":
                row.append(group[column.index])
            elif column.role == "suppressed":
                row.append(suppressed[g])
            elif suppressed[g]:
                row.append(None)
            else:
                value, low, high = cells[column.index][g]
                row.append({"value": value, "ci_low": low, "ci_high": high}[column.role])
        rows.append(tuple(row))
    rows = _order(rows, plan.order_by)
    return rows[: plan.limit] if plan.limit is not None else rows


def _release_aggregate(aggregate: Aggregate, noised, confidence: float, n_groups: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    if aggregate.function in ("count", "sum"):
        (m,) = aggregate.measures
        values, mechanism = noised(m.engine_column, m.sensitivity, m.epsilon, m.discrete)
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
    sum_m, count_m = aggregate.measures
    sums, sum_mech = noised(sum_m.engine_column, sum_m.sensitivity, sum_m.epsilon, sum_m.discrete)
    counts, count_mech = noised(count_m.engine_column, count_m.sensitivity, count_m.epsilon, count_m.discrete)
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
