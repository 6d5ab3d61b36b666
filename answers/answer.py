"""Released answers as data: the noisy measures of one query, and the key that identifies the question.

An answer stores every measure's noisy value per group together with its noise scale. Everything
shown to the analyst (suppression, intervals at any confidence level, rounding, ORDER BY, LIMIT,
column names) is computed from it, so asking the same question again, however worded, re-serves the
same answer: post-processing, at no privacy cost.

"The same question" means: the same dataset, the same answer-relevant policy of that dataset
(`Policy.answer_version`: editing another dataset, a user, a description, a budget or a detector
keeps answers valid) and the same data version; the same engine SQL regenerated from the checked
tree with parameters as their values (so aliases, letter case, whitespace, comments, ORDER BY,
LIMIT, `30 < age` for `age > 30`, and `$1` bound to 30 for a literal 30 do not matter, while
filters, groups and aggregates do); and the same measures with the same sensitivities and ε (so a
different dp.epsilon is a new question).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlglot import exp

from rewriter.plan import Plan
from rewriter.tree import literal


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
    """`policy_version` is the dataset's answer-relevant policy (`Policy.answer_version`)."""
    measures = [plan.threshold, *(m for a in plan.aggregates for m in a.measures)]
    parts = {
        "dataset": plan.dataset,
        "policy": policy_version,
        "data": data_version,
        "question": question_sql(plan, params),
        "measures": [
            (m.engine_column, repr(m.sensitivity), repr(m.epsilon), m.discrete, m.kind, repr(m.scale))
            for m in measures
        ],
        "groups": [[canonical(v) for v in key.values] for key in plan.keys],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def question_sql(plan: Plan, params: Sequence[Any]) -> str:
    """The engine SQL with each `$n` replaced by its value as a literal, so a parameter and the same
    value written in the query are one question.

    >>> import sqlglot
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class P:
    ...     engine_query: exp.Expression
    ...     engine_sql: str = ""
    ...     memo: dict = field(default_factory=dict)
    >>> tree = sqlglot.parse_one("SELECT 1 WHERE a > TRY_CAST(TRY_CAST($1 AS INT) AS INT)", read="postgres")
    >>> question_sql(P(tree), [30])
    'SELECT 1 WHERE a > TRY_CAST(30 AS INT)'
    """
    if not params:
        return plan.engine_sql
    template = plan.memo.get(("question", len(params)))
    if template is None:
        template = plan.memo[("question", len(params))] = _question_template(plan.engine_query, len(params))
    # One pass: a value whose text looks like a marker is never replaced again.
    return _MARKER.sub(lambda found: literal(params[int(found.group(1))]).sql("duckdb"), template)


_MARKER = re.compile("\x00([0-9]+)\x00")


def _question_template(query: exp.Expression, count: int) -> str:
    """The engine SQL with each of the first `count` parameters as a marker no statement text can
    hold (`question_sql` puts each value's literal in its place): the tree is copied and generated
    once per plan, not once per execution."""
    tree = query.copy()
    for node in list(tree.find_all(exp.Parameter)):
        index = int(node.this.this) - 1
        if 0 <= index < count:  # a bucketed question's range ($a, $b) stays a parameter
            node.replace(exp.Var(this=f"\x00{index}\x00"))
    for cast in list(tree.find_all(exp.TryCast)):  # a parameter's own cast inside the column's cast
        inner = cast.this
        if isinstance(inner, exp.TryCast) and inner.to == cast.to:
            cast.set("this", inner.this)
    return tree.sql("duckdb")


def canonical(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, Decimal)):
        return f"{type(value).__name__}:{value}"
    if isinstance(value, float):
        return repr(value)
    return value
