"""A dataset's files as DuckDB scans them in place: one file, a glob, or a (hive-partitioned) folder.

>>> s = FileSource.of(Path("/data/events/*/*.parquet"), None)
>>> s.pattern, s.allowed_directory, s.reader
('/data/events/*/*.parquet', '/data/events/', 'read_parquet')
>>> FileSource.of(Path("/data/e/*.csv"), None).reader
'read_csv'
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class FileSource:
    pattern: str  # what the scan reads: a file path or a glob
    reader: str  # read_parquet | read_csv
    allowed_directory: str | None  # folders and globs: the folder DuckDB may read below
    hive: bool  # key=value folders become columns

    @classmethod
    def of(cls, path: Path, fmt: str | None) -> FileSource:
        text = str(path)
        is_glob = any(c in text for c in _GLOB_CHARS)
        if not is_glob and path.is_dir():
            kind = fmt or (
                "csv" if any(path.rglob("*.csv")) and not any(path.rglob("*.parquet")) else "parquet"
            )
            return cls(f"{text.rstrip('/')}/**/*.{kind}", _reader(kind), text.rstrip("/") + "/", True)
        kind = fmt or ("csv" if text.lower().endswith((".csv", ".csv.gz")) else "parquet")
        if is_glob:
            base = Path(*[p for p in path.parts[: _first_glob_part(path)]])
            return cls(text, _reader(kind), str(base).rstrip("/") + "/", "=" in text or _has_hive(base))
        return cls(text, _reader(kind), None, False)

    def files(self) -> list[str]:
        if self.allowed_directory is None:
            return [self.pattern] if Path(self.pattern).exists() else []
        return sorted(glob.glob(self.pattern, recursive=True))

    def scan_sql(self, file: str | None = None) -> str:
        """The table function call over the source (or one of its files), the path a quoted literal."""
        path = self.pattern if file is None else file
        literal = "'" + path.replace("'", "''") + "'"
        options = ", hive_partitioning = true" if self.hive else ""
        if self.reader == "read_csv":
            options += ", header = true"
        return f"{self.reader}({literal}{options})"

    def version(self) -> str:
        """A fingerprint of which files there are and their size and modification time: cheap at any
        data size, and it changes whenever a file is replaced, added or removed."""
        digest = hashlib.blake2b(digest_size=16)
        for name in self.files():
            stat = Path(name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\n".encode())
        return digest.hexdigest()

    def size(self) -> int:
        return sum(Path(name).stat().st_size for name in self.files())


def _reader(kind: str) -> str:
    return "read_csv" if kind == "csv" else "read_parquet"


def _first_glob_part(path: Path) -> int:
    return next(i for i, part in enumerate(path.parts) if any(c in part for c in _GLOB_CHARS))


def _has_hive(base: Path) -> bool:
    return base.is_dir() and any("=" in p.name for p in base.iterdir() if p.is_dir())
