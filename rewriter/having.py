"""HAVING as post-processing: a condition over released values, evaluated after noise.

Only released columns may appear (aggregates that are also selected, or group keys), compared
with literals; the condition runs on the noisy values, and a suppressed group (NULL) never passes,
as SQL's three-valued logic has it. No extra ε is spent.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from pgerrors import FeatureNotAllowed

_COMPARE: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.GT: operator.gt, exp.GTE: operator.ge,
    exp.LT: operator.lt, exp.LTE: operator.le,
}  # fmt: skip
HINT = (
    "HAVING compares selected aggregates with numbers, e.g. HAVING COUNT(*) > 100 (with COUNT(*) selected)."
)


@dataclass(frozen=True)
class Condition:
    """A tree of ("and" | "or" | "not" | comparison, operands), operands being output indexes or literals."""

    op: str
    operands: tuple[Any, ...]

    def holds(self, row: Sequence[Any]) -> bool | None:
        if self.op == "and":
            results = [c.holds(row) for c in self.operands]
            return False if False in results else (None if None in results else True)
        if self.op == "or":
            results = [c.holds(row) for c in self.operands]
            return True if True in results else (None if None in results else False)
        if self.op == "not":
            inner = self.operands[0].holds(row)
            return None if inner is None else not inner
        if self.op == "is_null":
            return row[self.operands[0]] is None
        left, right = (row[o[1]] if o[0] == "col" else o[1] for o in self.operands)
        if left is None or right is None:
            return None
        return bool(_COMPARE_BY_NAME[self.op](left, right))


_COMPARE_BY_NAME = {cls.__name__: fn for cls, fn in _COMPARE.items()}


def compile_having(condition: exp.Expression, output_of: Callable[[exp.Expression], int | None]) -> Condition:
    """`output_of` maps a select-list expression to its output column index (None if not released)."""
    if isinstance(condition, exp.Paren):
        return compile_having(condition.this, output_of)
    if isinstance(condition, (exp.And, exp.Or)):
        op = "and" if isinstance(condition, exp.And) else "or"
        return Condition(
            op, tuple(compile_having(c, output_of) for c in (condition.this, condition.expression))
        )
    if isinstance(condition, exp.Not):
        return Condition("not", (compile_having(condition.this, output_of),))
    if isinstance(condition, exp.Is) and isinstance(condition.expression, exp.Null):
        return Condition("is_null", (_column(condition.this, output_of)[1],))
    if type(condition) in _COMPARE:
        operands = tuple(_operand(side, output_of) for side in (condition.this, condition.expression))
        if not any(o[0] == "col" for o in operands):
            raise FeatureNotAllowed("HAVING must compare a released value", hint=HINT)
        return Condition(type(condition).__name__, operands)
    raise FeatureNotAllowed(f"{condition.key.upper()} is not supported in HAVING", hint=HINT)


def _operand(node: exp.Expression, output_of: Callable[[exp.Expression], int | None]) -> tuple[str, Any]:
    if isinstance(node, exp.Literal) and not node.is_string:
        return ("lit", float(node.this))
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return ("lit", -float(node.this.this))
    if isinstance(node, exp.Literal):
        return ("lit", node.this)
    return _column(node, output_of)


def _column(node: exp.Expression, output_of: Callable[[exp.Expression], int | None]) -> tuple[str, int]:
    index = output_of(node)
    if index is None:
        raise FeatureNotAllowed("HAVING may only use values the query releases", hint=HINT)
    return ("col", index)
