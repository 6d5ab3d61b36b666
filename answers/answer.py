"""Released answers as data: the noisy measures of one query, and the key that identifies the question.

An answer stores every measure's noisy value per group together with its noise scale. Everything
shown to the analyst (suppression, intervals at any confidence level, rounding, ORDER BY, LIMIT,
column names) is computed from it, so asking the same question again, however worded, re-serves the
same answer: post-processing, at no privacy cost.

"The same question" means: the same dataset, policy version and data version; the same engine SQL
regenerated from the checked tree (so aliases, letter case, whitespace, comments, ORDER BY and
LIMIT do not matter, while filters, groups and aggregates do); the same bound parameter values; and
the same measures with the same sensitivities and ε (so a different dp.epsilon is a new question).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rewriter.plan import Plan


@dataclass(frozen=True)
class NoisyMeasure:
    scale: float
    discrete: bool
    values: tuple[float, ...]  # one per group, in the plan's group order
    kind: str = "laplace"


@dataclass(frozen=True)
class Answer:
    measures: dict[str, NoisyMeasure]

    def to_json(self) -> str:
        return json.dumps(
            {
                name: {"scale": m.scale, "discrete": m.discrete, "values": list(m.values), "kind": m.kind}
                for name, m in sorted(self.measures.items())
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Answer:
        raw = json.loads(text)
        return cls(
            {
                name: NoisyMeasure(
                    float(m["scale"]),
                    bool(m["discrete"]),
                    tuple(map(float, m["values"])),
                    str(m.get("kind", "laplace")),
                )
                for name, m in raw.items()
            }
        )


# Kept in place of an answer when the engine failed after the debit: asking again re-serves the same
# failure at no cost instead of re-running the plan, so a failure can be observed once at most.
FAILED = '{"__failed__":"engine"}'


def answer_key(plan: Plan, params: Sequence[Any], policy_version: str, data_version: str) -> str:
    measures = [plan.threshold, *(m for a in plan.aggregates for m in a.measures)]
    parts = {
        "dataset": plan.dataset,
        "policy": policy_version,
        "data": data_version,
        "engine_sql": plan.engine_sql,
        "params": [_canonical(p) for p in params],
        "measures": [
            (m.engine_column, repr(m.sensitivity), repr(m.epsilon), m.discrete, m.kind, repr(m.scale))
            for m in measures
        ],
        "groups": [[_canonical(v) for v in key.values] for key in plan.keys],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, Decimal)):
        return f"{type(value).__name__}:{value}"
    if isinstance(value, float):
        return repr(value)
    return value
