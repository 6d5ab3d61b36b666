"""Stored releases per time bucket: what lets a dashboard refresh for free.

A bucketed question (`rewriter.rules.bucket_time_range`) is released bucket by bucket. Each bucket's
noisy measures are stored under a key made of the question without its range (the same for every
range) and the bucket's start, so any later range that contains the bucket is answered from the
store, and only buckets never released before are noised (and charged) afresh. The buckets of one
fresh release are one query: its sensitivity is the plan's, over all its groups, whatever buckets a
person touches (contribution bounding caps those), so k new buckets cost one query's ε.

An answer's measures hold one value per group, in the order of the plan's groups (the product of
its keys' domains). `split` cuts it into one answer per bucket, each in the order of the other keys'
product; `assemble` puts stored buckets back together in the plan's order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from answers.answer import Answer, NoisyMeasure, canonical, question_sql
from rewriter.plan import Plan


def bucket_values(plan: Plan) -> tuple[Any, ...]:
    index = plan.bucket_key
    assert index is not None, "not a bucketed question"
    return plan.keys[index].values


def bucket_keys(
    plan: Plan, params: Sequence[Any], policy_version: str, data_versions: Mapping[Any, str]
) -> tuple[str, dict[Any, str]]:
    """The question's own key, and the store key of each of the plan's buckets. The question is the
    engine SQL with the client's parameters as values and the range left as $a, $b (so it is the
    same for every range), with the other keys' domains and the measures' scales; `policy_version`
    is `Policy.answer_version`; each bucket's key holds its own data version (`Engine.bucket_versions`),
    so new rows in other buckets leave it valid."""
    index = plan.bucket_key
    assert index is not None
    measures = [plan.threshold, *(m for a in plan.aggregates for m in a.measures)]
    base = json.dumps(
        {
            "dataset": plan.dataset,
            "policy": policy_version,
            "question": question_sql(plan, params),
            "measures": [
                (m.engine_column, repr(m.sensitivity), repr(m.epsilon), m.discrete, m.kind, repr(m.scale))
                for m in measures
            ],
            "groups": [[canonical(v) for v in k.values] for i, k in enumerate(plan.keys) if i != index],
            "bucket": plan.keys[index].key,
        },
        sort_keys=True,
    )
    keys = {
        value: hashlib.sha256(f"{base}|{canonical(value)}|{data_versions[value]}".encode()).hexdigest()
        for value in plan.keys[index].values
    }
    return hashlib.sha256(base.encode()).hexdigest(), keys


def split(plan: Plan, answer: Answer) -> dict[Any, Answer]:
    """One answer per bucket, each over the other keys' groups in their product order."""
    index = plan.bucket_key
    assert index is not None
    groups = list(itertools.product(*(k.values for k in plan.keys)))
    positions: dict[Any, list[int]] = {value: [] for value in plan.keys[index].values}
    for position, group in enumerate(groups):
        positions[group[index]].append(position)
    return {
        value: Answer(
            {
                name: NoisyMeasure(m.scale, m.discrete, tuple(m.values[p] for p in where), m.kind)
                for name, m in answer.measures.items()
            }
        )
        for value, where in positions.items()
    }


def assemble(plan: Plan, parts: Mapping[Any, Answer]) -> Answer:
    """The plan's answer from one stored answer per bucket (every bucket of the plan present)."""
    index = plan.bucket_key
    assert index is not None
    groups = list(itertools.product(*(k.values for k in plan.keys)))
    others = [k.values for i, k in enumerate(plan.keys) if i != index]
    offset = {rest: i for i, rest in enumerate(itertools.product(*others))}
    first = next(iter(parts.values()))
    measures = {}
    for name, template in first.measures.items():
        values = []
        for group in groups:
            rest = group[:index] + group[index + 1 :]
            values.append(parts[group[index]].measures[name].values[offset[rest]])
        measures[name] = NoisyMeasure(template.scale, template.discrete, tuple(values), template.kind)
    return Answer(measures)


def placeholder(plan: Plan) -> Answer:
    """A bucket's answer shape with zeros: stands in for buckets that are not released (pending)."""
    index = plan.bucket_key
    assert index is not None
    size = 1
    for i, key in enumerate(plan.keys):
        if i != index:
            size *= len(key.values)
    measures = [plan.threshold, *(m for a in plan.aggregates for m in a.measures)]
    return Answer(
        {m.engine_column: NoisyMeasure(m.scale, m.discrete, (0.0,) * size, m.kind) for m in measures}
    )
