"""EXPLAIN of a DP query: what it will cost and how precise it will be, from the plan alone (free)."""

from __future__ import annotations

from privacy import intervals
from privacy.mechanisms import mechanism
from rewriter.plan import Aggregate, Plan
from rewriter.policy import Dataset


def explain(
    plan: Plan, dataset: Dataset, remaining: float, total: float, answered: bool, engine_sql: str
) -> list[str]:
    alpha = 1 - plan.confidence
    bounds = dataset.bounds()
    k = bounds.max_groups_contributed if plan.keys else 1
    lines = [
        f'DP plan on dataset "{plan.dataset}" (privacy unit: {dataset.privacy_unit}; '
        f"each unit counts in at most {k} group(s), with at most {bounds.max_rows_per_group} row(s) in each)",
        f"ε {plan.epsilon:.4g}"
        + (f", δ {plan.delta:.3g}" if plan.delta else "")
        + f" for this query; {remaining:.4g} of {total:.4g} left"
        + ("; already answered: running it again costs nothing" if answered else ""),
        f"groups released: {_group_count(plan)} (every group of the public domain, small ones suppressed)",
    ]
    if plan.bucketing is not None:
        b = plan.bucketing
        lines.append(
            f"time buckets of {b.column} from {b.start:%Y-%m-%d %H:%M:%S} up to {b.end:%Y-%m-%d %H:%M:%S}: "
            "each released once and kept; only buckets never released cost ε (together, once)"
        )
    t = plan.threshold
    size = mechanism(t.kind, t.scale, True)
    tau = plan.min_group_size
    lines.append(
        f"  group size (suppressed below {tau}): ε {t.epsilon:.4g}, {_noise_name(t.kind, True)} "
        f"scale {size.scale:.4g}"
    )
    sizes = sorted({max(1, tau // 2), tau, 2 * tau, 4 * tau})
    chances = ", ".join(f"{n}: {size.below(tau - n):.1%}" for n in sizes)
    lines.append(f"    chance a group is suppressed, by its true size: {chances}")
    for aggregate in plan.aggregates:
        lines.extend(_aggregate_lines(aggregate, alpha, plan.confidence))
    lines.append(
        f"engine SQL on {dataset.engine} (clipped and bounded; it runs only when the answer is released):"
    )
    lines.append(f"  {engine_sql}")
    return lines


def _aggregate_lines(aggregate: Aggregate, alpha: float, confidence: float) -> list[str]:
    level = f"{confidence:.0%}"
    if aggregate.function in ("count", "sum"):
        (m,) = aggregate.measures
        noise = mechanism(m.kind, m.scale, m.discrete)
        kind = _noise_name(m.kind, m.discrete)
        clip = (
            f", values clipped to [{aggregate.lower:g}, {aggregate.upper:g}]"
            if aggregate.lower is not None
            else ""
        )
        return [
            f"  {aggregate.name} = {aggregate.function.upper()}: ε {m.epsilon:.4g}, "
            f"sensitivity {m.sensitivity:g}, {kind} scale {noise.scale:.4g}{clip}; "
            f"{level} interval ± {noise.half_width(alpha):.4g}"
        ]
    if aggregate.function == "quantile":
        first = aggregate.measures[0]
        return [
            f"  {aggregate.name} = PERCENTILE {aggregate.fraction:g}: ε {first.epsilon:.4g} for a noisy "
            f"histogram of {len(aggregate.measures)} bins over [{aggregate.lower:g}, {aggregate.upper:g}] "
            f"(discrete Laplace scale {first.scale:.4g} per bin)"
        ]
    if aggregate.function.startswith(("var", "stddev")):
        squares_m, sum_m, count_m = aggregate.measures
        return [
            f"  {aggregate.name} = {aggregate.function.upper()}: ε {aggregate.epsilon:.4g} split in three "
            f"(centred sum of squares, centred sum, count; {_noise_name(sum_m.kind, False)} scales "
            f"{squares_m.scale:.4g}, {sum_m.scale:.4g}, {count_m.scale:.4g}), "
            f"values clipped to [{aggregate.lower:g}, {aggregate.upper:g}]"
        ]
    sum_m, count_m = aggregate.measures
    sum_mech = mechanism(sum_m.kind, sum_m.scale, False)
    count_mech = mechanism(count_m.kind, count_m.scale, True)
    assert aggregate.lower is not None and aggregate.upper is not None
    widths = []
    for n in (100, 1000, 10000):
        ci = intervals.ratio_of_centred_sum(
            0.0,
            sum_mech,
            float(n),
            count_mech,
            aggregate.midpoint,
            aggregate.lower,
            aggregate.upper,
            confidence,
        )
        widths.append(f"{n}: ± {(ci.high - ci.low) / 2:.4g}")
    return [
        f"  {aggregate.name} = AVG: ε {aggregate.epsilon:.4g} = {sum_m.epsilon:.4g} for a centred sum "
        f"(scale {sum_mech.scale:.4g}) + {count_m.epsilon:.4g} for a count (scale {count_mech.scale:.4g}), "
        f"values clipped to [{aggregate.lower:g}, {aggregate.upper:g}]",
        f"    {level} interval half-width, by group size: {', '.join(widths)}",
    ]


def _group_count(plan: Plan) -> int:
    count = 1
    for key in plan.keys:
        count *= len(key.values)
    return count


def _noise_name(kind: str, discrete: bool) -> str:
    return ("discrete " if discrete else "") + ("Gaussian" if kind == "gaussian" else "Laplace")
