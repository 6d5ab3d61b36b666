"""docs/errors.md and pgerrors/ list the same classes with the same SQLSTATEs."""

from __future__ import annotations

import re
from pathlib import Path

import pgerrors

DOC = Path(__file__).parent.parent / "docs" / "errors.md"


def test_every_error_class_is_documented_with_its_code() -> None:
    documented = dict(re.findall(r"^\| (\w{5}) \| (\w+) \|", DOC.read_text(), flags=re.M))
    in_code = {cls.sqlstate: cls.__name__ for cls in pgerrors.PgError.__subclasses__()}
    assert {v: k for k, v in documented.items()} == {v: k for k, v in in_code.items()}
