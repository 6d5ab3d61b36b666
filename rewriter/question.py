"""What an aggregate query asks, in a normal form the attack detectors compare (privacy.detectors).

A `Question` lists the query's aggregates, its groups and the conjuncts of its WHERE clause, each as
canonical SQL without table qualifiers: `'HR' = e.department` and `department IN ('HR')` both
become `department = 'HR'`, `NOT age = 3` becomes `age <> 3`, and conditions every row within the
policy's bounds or time range meets (`salary >= 0` when salary is bounded below by 20000) are dropped. Two
rewordings of one question therefore have the same conjuncts; a differencing pair differs by one.
Parameters stay as `$n` until `render` substitutes the bound values.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from rewriter.policy import Dataset
from rewriter.tree import aggregate_name, literal, parameter_index

_FLIPPED: dict[type[exp.Expression], type[exp.Binary]] = {
    exp.EQ: exp.EQ, exp.NEQ: exp.NEQ, exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE,
}  # fmt: skip
_NEGATED: dict[type[exp.Expression], type[exp.Binary]] = {
    exp.EQ: exp.NEQ, exp.NEQ: exp.EQ, exp.GT: exp.LTE, exp.GTE: exp.LT, exp.LT: exp.GTE, exp.LTE: exp.GT,
}  # fmt: skip


@dataclass(frozen=True)
class Question:
    measures: tuple[str, ...]  # e.g. ("COUNT(*)", "AVG(salary)")
    groups: tuple[str, ...]  # e.g. ("department",)
    conjuncts: tuple[str, ...]  # sorted; may hold $n parameters

    def render(self, params: Sequence[Any]) -> Question:
        """The same question with bound parameter values in place of $n (remembered: a prepared
        statement asks the same question with the same values again and again)."""
        if not params or not any("$" in c for c in self.conjuncts):
            return self
        try:
            return _rendered(self, tuple(params))
        except TypeError:  # a value that cannot be a dictionary key
            return self._render(params)

    def _render(self, params: Sequence[Any]) -> Question:
        rendered = []
        for text in self.conjuncts:
            node = sqlglot.parse_one(text, read="postgres")
            node = node.transform(
                lambda n: (
                    literal(params[parameter_index(n)])
                    if isinstance(n, exp.Parameter) and parameter_index(n) < len(params)
                    else n
                )
            )
            rendered.append(node.sql(dialect="postgres"))
        return Question(self.measures, self.groups, tuple(sorted(set(rendered))))

    def to_json(self) -> str:
        return json.dumps([self.measures, self.groups, self.conjuncts], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Question:
        measures, groups, conjuncts = json.loads(text)
        return cls(tuple(measures), tuple(groups), tuple(conjuncts))


def describe_question(tree: exp.Select, dataset: Dataset) -> Question:
    """The normal form of a checked (qualified, filter-restricted) query."""
    measures = sorted(
        {
            _sql(_unqualified(node))
            for item in tree.expressions
            for node in item.find_all(exp.AggFunc, exp.WithinGroup)
            if aggregate_name(node) is not None and not isinstance(node.parent, exp.WithinGroup)
        }
    )
    group = tree.args.get("group")
    groups = tuple(_sql(_unqualified(g)) for g in group.expressions) if group is not None else ()
    where = tree.args.get("where")
    conjuncts: set[str] = set()
    if where is not None:
        for part in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
            node = _normal(_unqualified(part.unnest()))
            if node is not None and not _always_true(node, dataset):
                conjuncts.add(_sql(node))
    return Question(tuple(measures), groups, tuple(sorted(conjuncts)))


def _unqualified(node: exp.Expression) -> exp.Expression:
    node = node.copy()
    for column in node.find_all(exp.Column):
        column.set("table", None)
        column.this.set("quoted", False)
    return node


def _normal(node: exp.Expression) -> exp.Expression | None:
    """One conjunct in canonical shape, or None when it is a tautology (TRUE, 1 = 1)."""
    if isinstance(node, exp.Boolean) and node.this:
        return None
    if isinstance(node, exp.Not) and type(node.this.unnest()) in _NEGATED:
        inner = node.this.unnest()
        node = _NEGATED[type(inner)](this=inner.this, expression=inner.expression)
    if (
        type(node) in _FLIPPED
        and not isinstance(node.this, exp.Column)
        and isinstance(node.expression, exp.Column)
    ):
        node = _FLIPPED[type(node)](this=node.expression, expression=node.this)
    if type(node) in _FLIPPED and not node.find(exp.Column):
        return None if _sql(node.this) == _sql(node.expression) and isinstance(node, exp.EQ) else node
    if isinstance(node, exp.In) and len(node.expressions) == 1 and not node.args.get("query"):
        cls = exp.NEQ if node.args.get("negate") else exp.EQ
        node = cls(this=node.this, expression=node.expressions[0])
    if isinstance(node, exp.In) and not node.args.get("negate"):
        node.set("expressions", sorted(node.expressions, key=_sql))
    return node


def _always_true(node: exp.Expression, dataset: Dataset) -> bool:
    """A range condition every value within the column's declared bounds (or time range) meets."""
    if type(node) not in (exp.GT, exp.GTE, exp.LT, exp.LTE) or not isinstance(node.this, exp.Column):
        return False
    spec = dataset.columns.get(node.this.name)
    value = node.expression.this if isinstance(node.expression, exp.Cast) else node.expression
    if spec is None or not isinstance(value, exp.Literal):
        return False
    low: float | dt.date | None
    high: float | dt.date | None
    try:
        if spec.bounded and not value.is_string:
            low, high, number = spec.lower, spec.upper, float(value.this)
        elif spec.bucketable and value.is_string:
            low, high, number = spec.earliest, spec.latest, dt.date.fromisoformat(value.this[:10])
        else:
            return False
    except ValueError:
        return False
    assert low is not None and high is not None
    if isinstance(node, exp.GT):
        return number < low  # type: ignore[operator]
    if isinstance(node, exp.GTE):
        return number <= low  # type: ignore[operator]
    if isinstance(node, exp.LT):
        return number > high  # type: ignore[operator]
    return number >= high  # type: ignore[operator]


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="postgres")


@functools.lru_cache(maxsize=4096)
def _rendered(question: Question, params: tuple[Any, ...]) -> Question:
    return question._render(params)
