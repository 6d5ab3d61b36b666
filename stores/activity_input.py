"""Activity rows as they arrive (COPY text or CSV, CSV files, JSON lines), read into columns.

A batch is three text columns, `user_id`, `ts` and `op`, any segment columns the policy declares
(public values such as a platform: `segments`), plus each row's line number, so the store
(`stores.activity`) can check and pseudonymise the whole batch at once in DuckDB. Reading never
interprets a value: a row with the wrong number of fields is refused here (BadEvent, with its line);
a bad time or op is found by the store, which names the line too. COPY text without backslashes (the
common case) is split in a few C-level calls; anything else goes row by row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Format = Literal["text", "csv", "jsonl"]
FIELDS = ("user_id", "ts", "op")


class BadEvent(ValueError):
    """A row that is not an event: the batch it came in is stored nowhere."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass
class Batch:
    """One COPY or file: columns of equal length, `line` the 1-based line each row came from."""

    user_id: np.ndarray
    ts: np.ndarray
    op: np.ndarray
    line: np.ndarray
    segments: dict[str, np.ndarray] = field(default_factory=dict)  # column name -> values (None: none)

    def __len__(self) -> int:
        return len(self.user_id)

    @classmethod
    def of_rows(
        cls, rows: Sequence[tuple[str | None, ...]], first_line: int = 1, segments: Sequence[str] = ()
    ) -> Batch:
        """Rows of (user_id, ts, op, *segments)."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(3 + len(segments))]
        arrays = [np.array(c, dtype=object) for c in columns]
        return cls(
            *arrays[:3],
            line=np.arange(first_line, first_line + len(rows), dtype=np.int64),
            segments=dict(zip(segments, arrays[3:], strict=True)),
        )


def read_batch(
    data: bytes | str,
    fmt: Format,
    columns: Sequence[str] = FIELDS,
    header: bool = False,
) -> Batch:
    """Rows of `columns`: user_id, ts, optionally op (which defaults to `+`), in any order, and
    any other names as segment columns (the caller checks them against the policy).

    >>> b = read_batch(b"u1\\t2025-10-01 08:00\\t+\\nu2\\t2025-10-02\\t-\\n", "text")
    >>> list(b.user_id), list(b.op), b.line.tolist()
    (['u1', 'u2'], ['+', '-'], [1, 2])
    >>> list(read_batch("ts,user_id\\n2025-10-01,u1\\n", "csv", ("ts", "user_id"), header=True).op)
    ['+']
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if fmt == "jsonl":
        return _jsonl(text, [c for c in columns if c not in FIELDS])
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[-1] in ("\\.", "\\.\r"):  # the end-of-data marker old clients send
        lines.pop()
    first = 1
    if header and lines:
        lines, first = lines[1:], 2
    if fmt == "text" and "\\" not in text and "\r" not in text:
        fields = "\t".join(lines).split("\t") if lines else []
        if len(fields) == len(columns) * len(lines):
            split = [fields[i :: len(columns)] for i in range(len(columns))]
            return _ordered(split, columns, len(lines), first)
    reader = csv.reader(lines) if fmt == "csv" else (_text_fields(line) for line in lines)
    rows = []
    for number, fields in enumerate(reader, start=first):
        if len(fields) != len(columns):
            if fields == [] or fields == [""]:
                continue  # a blank line
            raise BadEvent(
                number, f"expected {len(columns)} values ({', '.join(columns)}), found {len(fields)}"
            )
        rows.append(fields)
    split = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in columns]
    return _ordered(split, columns, len(rows), first)


def _ordered(split: list[list], columns: Sequence[str], n: int, first: int) -> Batch:
    named = {name: np.array(column, dtype=object) for column, name in zip(split, columns, strict=True)}
    if "user_id" not in named or "ts" not in named:
        raise ValueError("a batch needs user_id and ts columns")
    op = named.pop("op", None)
    return Batch(
        named.pop("user_id"),
        named.pop("ts"),
        np.full(n, "+", dtype=object) if op is None else op,
        np.arange(first, first + n, dtype=np.int64),
        segments={k: np.array([v if v != "" else None for v in a], dtype=object) for k, a in named.items()},
    )


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _text_fields(line: str) -> list[str | None]:
    """One line of COPY's text format: tab-separated, `\\N` for NULL, backslash escapes."""
    out: list[str | None] = []
    for raw in line.rstrip("\r").split("\t"):
        if raw == "\\N":
            out.append(None)
            continue
        if "\\" not in raw:
            out.append(raw)
            continue
        chars, i = [], 0
        while i < len(raw):
            if raw[i] == "\\" and i + 1 < len(raw):
                chars.append(_ESCAPES.get(raw[i + 1], raw[i + 1]))
                i += 2
            else:
                chars.append(raw[i])
                i += 1
        out.append("".join(chars))
    return out


def _jsonl(text: str, segments: Sequence[str] = ()) -> Batch:
    rows: list[tuple[str | None, ...]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            row = (raw["user_id"], raw["ts"], raw.get("op", "+"), *(raw.get(s) for s in segments))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise BadEvent(number, f"not a JSON object with user_id and ts ({err})") from None
        rows.append(tuple(None if v is None or v == "" else str(v) for v in row))
        lines.append(number)
    batch = Batch.of_rows(rows, segments=segments)
    batch.line = np.array(lines, dtype=np.int64)
    return batch
