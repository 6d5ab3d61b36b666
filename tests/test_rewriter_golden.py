"""Golden files are the rewriter's spec: tests/fixtures/rewriter/<name>.sql.

Each case is an input statement line followed by a `  => ` line: the DuckDB SQL the engine runs, or
`ERROR <sqlstate>: <message>`. Cases are separated by blank lines; `--` lines are comments.
To add a case, write the input line and `  => TODO`; then regenerate the expected lines with
`GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_rewriter_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgerrors import PgError
from rewriter.context import RewriteContext
from rewriter.parse import split_statements
from rewriter.pipeline import plan_query
from rewriter.policy import load_policy

FIXTURES = Path(__file__).parent / "fixtures" / "rewriter"
POLICY = load_policy(Path(__file__).parent.parent / "policies" / "demo.yaml")


def rewrite(sql: str) -> str:
    try:
        (statement,) = split_statements(sql)
        assert statement.tree is not None
        ctx = RewriteContext(POLICY, "analyst", "analyst", unique_units=frozenset({"employees"}))
        return plan_query(statement.tree, ctx).engine_sql
    except PgError as error:
        return f"ERROR {error.sqlstate}: {error.message}"


def cases(path: Path) -> list[tuple[str, str]]:
    out = []
    for block in path.read_text().split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith("--")]
        if lines:
            assert len(lines) == 2 and lines[1].startswith("  => "), f"malformed case in {path.name}: {lines}"
            out.append((lines[0], lines[1][5:]))
    return out


def all_cases() -> list[tuple[str, str, str]]:
    return [(p.stem, sql, expected) for p in sorted(FIXTURES.glob("*.sql")) for sql, expected in cases(p)]


@pytest.mark.parametrize(("fixture", "sql", "expected"), all_cases())
def test_golden(fixture: str, sql: str, expected: str) -> None:
    assert rewrite(sql) == expected


def update() -> None:  # pragma: no cover - a maintenance helper
    for path in FIXTURES.glob("*.sql"):
        text = path.read_text()
        for sql, expected in cases(path):
            text = text.replace(f"{sql}\n  => {expected}", f"{sql}\n  => {rewrite(sql)}")
        path.write_text(text)


if os.environ.get("GOLDEN_UPDATE"):
    update()


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((0, float("inf")), "finite"),
        ((float("nan"), 1), "finite"),
        ((0, 1e16), "rescale the column"),
        ((5, 5), "lower must be below upper"),
    ],
)
def test_policy_bounds_are_finite_and_sane(bounds: tuple[float, float], message: str) -> None:
    from pydantic import ValidationError

    from rewriter.policy import Column

    with pytest.raises(ValidationError, match=message):
        Column(type="double", lower=bounds[0], upper=bounds[1])
