"""The layers in the tree: no import runs back up a layer, and engines and stores never import each other.

pgerrors < privacy (pure DP math) < rewriter (SQL + policy → plan) < answers (plan + exact rows →
released rows) < engines | stores < proxy (wire, sessions, routing). Imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[set[str]] = [
    {"pgerrors"},
    {"privacy"},
    {"rewriter"},
    {"answers"},
    {"engines", "stores"},
    {"proxy"},
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(RANK)


def test_no_import_runs_back_up_a_layer() -> None:
    wrong = []
    for package, rank in RANK.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in sorted(_imports(path) - {package}):
                if RANK[imported] >= rank:
                    wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def test_privacy_is_pure_math() -> None:
    """privacy/ does no I/O: no database, socket, file or engine module."""
    io_modules = {"sqlite3", "socket", "duckdb", "psycopg", "asyncio", "pyspark", "pathlib", "os"}
    for path in sorted((ROOT / "privacy").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not names & io_modules, f"{path.name} imports {names & io_modules}"
