"""`privacylens validate`: a policy checked against its schema and against the data it describes.

The schema check is the loader's (pydantic). The data check reads each dataset's source and fails
when more than 1% of a column's non-null values lie outside its declared `lower`/`upper` bounds or
`earliest`/`latest` range (clipping that many values would bias every answer), when a declared
column is missing from the source, when the privacy unit has nulls (those rows are never
counted), or when a dataset declared `one_row_per_unit` has units with several
rows. Values outside `group_by_values` are reported as notes: they are left out of grouped
answers, which may be intended. It reads private data and is for admins only; nothing it prints
is released to analysts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from engines.duckdb_engine import duplicate_units
from engines.sources import FileSource
from rewriter.policy import Dataset, Policy

MAX_OUTSIDE = 0.01


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_data(policy: Policy) -> Report:
    report = Report()
    for name, dataset in sorted(policy.datasets.items()):
        if dataset.engine != "duckdb":
            report.notes.append(f"{name}: on {dataset.engine}; its table is checked when the proxy starts")
            continue
        source = FileSource.of(policy.source_path(name), dataset.format)
        if not source.files():
            report.problems.append(f"{name}: source {source.pattern} matches no file")
            continue
        con = duckdb.connect(":memory:")
        con.execute(f"CREATE VIEW source AS SELECT * FROM {source.scan_sql()}")
        present = {row[0] for row in con.execute("DESCRIBE source").fetchall()}
        _check_dataset(con, name, dataset, present, report)
        con.close()
    return report


def _check_dataset(
    con: duckdb.DuckDBPyConnection, name: str, dataset: Dataset, present: set[str], report: Report
) -> None:
    missing = sorted(set(dataset.columns) - present)
    for column in missing:
        report.problems.append(f"{name}.{column}: declared in the policy but not in the source")
    unit = dataset.privacy_unit
    if unit not in missing:
        (nulls,) = con.execute(f'SELECT count(*) FROM source WHERE "{unit}" IS NULL').fetchone()  # type: ignore[misc]
        if nulls:
            report.problems.append(
                f"{name}.{unit}: {nulls} rows have no privacy unit (they are never counted)"
            )
        if dataset.one_row_per_unit:
            duplicates = duplicate_units(con, "source", unit)
            if duplicates:
                report.problems.append(
                    f"{name}.{unit}: one_row_per_unit is declared but {duplicates} privacy units have "
                    "several rows (queries then keep one row per unit, chosen at random)"
                )
    for column, spec in sorted(dataset.columns.items()):
        if column in missing:
            continue
        quoted = f'"{column}"'
        if spec.bounded:
            _check_range(con, f"{name}.{column}", quoted, spec.lower, spec.upper, "bounds", report)
        if spec.bucketable:
            _check_range(
                con, f"{name}.{column}", f"CAST({quoted} AS DATE)",
                spec.earliest.isoformat() if spec.earliest else None,
                spec.latest.isoformat() if spec.latest else None, "time range", report,
            )  # fmt: skip
        if spec.group_by_values is not None:
            values = [str(v) for v in spec.group_by_values]
            (outside, total) = con.execute(  # type: ignore[misc]
                f"SELECT count(*) FILTER (WHERE CAST({quoted} AS VARCHAR) NOT IN (SELECT unnest(?))), "
                f"count({quoted}) FROM source",
                [values],
            ).fetchone()
            if outside:
                report.notes.append(
                    f"{name}.{column}: {outside} of {total} values are not in group_by_values "
                    "(left out of grouped answers)"
                )


def _check_range(
    con: duckdb.DuckDBPyConnection,
    label: str,
    expression: str,
    low: object,
    high: object,
    what: str,
    report: Report,
) -> None:
    below, above, total = con.execute(  # type: ignore[misc]
        f"SELECT count(*) FILTER (WHERE {expression} < ?), count(*) FILTER (WHERE {expression} > ?), "
        f"count({expression}) FROM source",
        [low, high],
    ).fetchone()
    outside = below + above
    if total and outside / total > MAX_OUTSIDE:
        report.problems.append(
            f"{label}: {outside / total:.1%} of {total} values lie outside the declared {what} "
            f"[{low}, {high}] ({below} below, {above} above; at most {MAX_OUTSIDE:.0%} may)"
        )
    elif outside:
        report.notes.append(f"{label}: {outside} of {total} values lie outside the declared {what} (clipped)")
