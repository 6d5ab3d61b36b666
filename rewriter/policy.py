"""The policy schema: what admins write in `policies/*.yaml`, loaded and validated in one place.

A policy declares datasets (where the data lives, its privacy unit, each column's type, clipping
bounds, allowed aggregates and public group-by values), per-analyst ε budgets, per-query ε limits,
suppression settings, and the users who may log in. Everything here is pure: no I/O but `load_policy`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rewriter.intervals import parse_interval
from rewriter.roles import Role

ColumnType = Literal["bigint", "integer", "double", "text", "date", "boolean", "timestamp"]
AggregateName = Literal["count", "sum", "avg", "var", "stddev", "quantile"]

NUMERIC_TYPES = frozenset({"bigint", "integer", "double"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


MAX_ABS_BOUND = 1e15  # sums are exact fixed-point BIGINT sums; see rewriter/fixed_point.py


class Column(_Frozen):
    """One column of a dataset as the policy exposes it."""

    type: ColumnType
    description: str = ""
    lower: float | None = None
    upper: float | None = None
    earliest: dt.date | None = Field(
        default=None,
        description="Date/timestamp columns: the public time range of GROUP BY date_trunc(...) buckets. "
        "Every bucket in the range is released; rows outside it are left out of bucketed queries.",
    )
    latest: dt.date | None = None
    aggregates: tuple[AggregateName, ...] | None = None
    group_by_values: tuple[str | int | bool, ...] | None = Field(
        default=None,
        description="The public list of values this column may be grouped by. Declaring it makes the "
        "column groupable; every listed value is released as a group (suppressed when small), so the "
        "presence of a group never depends on private data.",
    )
    filterable: bool = True

    @model_validator(mode="after")
    def _bounds_are_consistent(self) -> Column:
        if (self.lower is None) != (self.upper is None):
            raise ValueError("give both lower and upper, or neither")
        if self.lower is not None and self.upper is not None:
            if self.type not in NUMERIC_TYPES:
                raise ValueError(f"bounds only apply to numeric columns, not {self.type}")
            if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
                raise ValueError("lower and upper must be finite numbers")
            if max(abs(self.lower), abs(self.upper)) > MAX_ABS_BOUND:
                raise ValueError(
                    f"bounds beyond ±{MAX_ABS_BOUND:.0e} leave no room for exact sums; "
                    "rescale the column (e.g. thousands) or tighten the bounds"
                )
            if not self.lower < self.upper:
                raise ValueError("lower must be below upper")
        if (self.earliest is None) != (self.latest is None):
            raise ValueError("give both earliest and latest, or neither")
        if self.earliest is not None and self.latest is not None:
            if self.type not in ("date", "timestamp"):
                raise ValueError("earliest/latest apply to date and timestamp columns")
            if not self.earliest <= self.latest:
                raise ValueError("earliest must not be after latest")
        if self.group_by_values is not None and len(self.group_by_values) == 0:
            raise ValueError("group_by_values must list at least one value")
        return self

    @property
    def bounded(self) -> bool:
        return self.lower is not None and self.upper is not None

    @property
    def bucketable(self) -> bool:
        """May be grouped by date_trunc(unit, column): it declares its public time range."""
        return self.earliest is not None and self.latest is not None

    def allowed_aggregates(self) -> frozenset[str]:
        """Aggregates the policy allows on this column (COUNT(col) needs no bounds)."""
        if self.aggregates is not None:
            declared = frozenset(self.aggregates)
            return declared if self.bounded else declared & {"count"}
        every = frozenset({"count", "sum", "avg", "var", "stddev", "quantile"})
        return every if self.bounded else frozenset({"count"})


class Budget(_Frozen):
    epsilon: float = Field(gt=0, description="Total ε each analyst may spend on this dataset (per period).")
    delta: float | None = Field(
        default=None,
        gt=0,
        lt=1e-3,
        description="With a δ, budgets are (ε, δ), composed by the RDP accountant; Gaussian noise allowed.",
    )
    refresh_days: int | None = Field(
        default=None,
        ge=1,
        description="Each analyst's budget starts afresh every this many days (UTC, "
        "periods counted from 1970-01-01); omit for a budget that never refreshes.",
    )

    def period(self, now: float) -> int:
        """The budget period `now` (seconds since the epoch) falls in; 0 when budgets never refresh."""
        return 0 if self.refresh_days is None else 1 + int(now // (self.refresh_days * 86_400))

    def refreshes(self, now: float) -> str:
        """When the current period ends, in words, or "" when budgets never refresh."""
        if self.refresh_days is None:
            return ""
        end = self.period(now) * self.refresh_days * 86_400
        return "on " + dt.datetime.fromtimestamp(end, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class QueryLimits(_Frozen):
    default_epsilon: float = Field(0.5, gt=0)
    min_epsilon: float = Field(0.01, gt=0)
    max_epsilon: float = Field(2.0, gt=0)
    confidence: float = Field(0.95, gt=0, lt=1, description="Default level of the released intervals.")
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    default_delta: float = Field(1e-7, gt=0, lt=1e-3, description="δ per query with Gaussian noise.")

    @model_validator(mode="after")
    def _ordered(self) -> QueryLimits:
        if not self.min_epsilon <= self.default_epsilon <= self.max_epsilon:
            raise ValueError("need min_epsilon <= default_epsilon <= max_epsilon")
        return self


class Suppression(_Frozen):
    min_group_size: int = Field(20, ge=0)
    epsilon_share: float = Field(
        0.2, gt=0, lt=1, description="Share of each query's ε spent on the noisy group-size threshold."
    )


class AppendOnly(_Frozen):
    """Rows arrive in time order: a time bucket is released once it is complete, then kept."""

    column: str = Field(description="The time column rows arrive in the order of (date or timestamp).")
    complete_after: str = Field(
        "0 seconds",
        description="How long after a time bucket ends its data is complete, e.g. '1 hour'; until then "
        "the bucket comes back NULL and pending, at no cost.",
    )

    @field_validator("complete_after")
    @classmethod
    def _is_an_interval(cls, value: str) -> str:
        parse_interval(value)
        return value

    def lag(self) -> dt.timedelta:
        return parse_interval(self.complete_after)


class Contribution(_Frozen):
    """How much one privacy unit may contribute; enforced in the engine plan, so sensitivities hold."""

    max_groups_contributed: int = Field(1, ge=1, description="Groups one unit may appear in per query.")
    max_rows_per_group: int = Field(1, ge=1, description="Rows one unit may contribute to one group.")


class Detector(_Frozen):
    action: Literal["flag", "throttle", "refuse"] = Field(
        "flag",
        description="flag: record an alert only; throttle: delay the users' further queries on the "
        "dataset; refuse: withhold the answer that raised the alert and refuse their further queries "
        "on the dataset (both for `detectors.hold_seconds`).",
    )


class Differencing(Detector):
    max_units: int = Field(
        10,
        ge=1,
        description="Two answered questions whose filters differ by one condition are a differencing "
        "pair when, in a group released by both, the noisy group sizes differ by at most this many "
        "units: up to 3 standard deviations more for exclusions (<>, NOT IN) and conditions on the "
        "privacy unit, 3 standard deviations less for ranges (privacy/detectors.py).",
    )


class Averaging(Detector):
    max_repeats: int = Field(
        10,
        ge=1,
        description="More fresh answers than this to the same aggregate of the same question "
        "(filters normalised, ε ignored) within the window raise an alert.",
    )


class Burst(Detector):
    max_queries: int = Field(100, ge=1, description="More answered or refused queries than this ...")
    seconds: float = Field(60.0, gt=0, description="... by one user within this many seconds is a burst.")


class Detectors(_Frozen):
    """Attack heuristics (defence in depth: the budget is the guarantee). See docs/operations.md."""

    window_hours: float = Field(24.0, gt=0, description="How far back differencing and averaging look.")
    hold_seconds: float = Field(3600.0, gt=0, description="How long a throttle or refusal lasts.")
    throttle_seconds: float = Field(2.0, gt=0, description="The delay added to each throttled query.")
    differencing: Differencing = Differencing()
    averaging: Averaging = Averaging()
    burst: Burst = Burst()


class Dataset(_Frozen):
    engine: Literal["duckdb", "postgres", "spark"] = Field(
        "duckdb",
        description="Where the data lives and the plan runs: the embedded DuckDB (files scanned in "
        "place), a PostgreSQL table, or Spark (docs/engines.md).",
    )
    source: str | None = Field(
        default=None,
        description="duckdb and spark: a Parquet or CSV file, glob (`events/*.parquet`) or "
        "hive-partitioned folder, relative to the policy file.",
    )
    format: Literal["parquet", "csv"] | None = Field(
        default=None, description="The source's format; by default from its file name (.csv, else Parquet)."
    )
    dsn: str | None = Field(
        default=None,
        description="postgres: a libpq URL; `${NAME}` is replaced by the environment variable NAME.",
    )
    table: str | None = Field(
        default=None, description="postgres: the table (optionally schema.table); spark: a catalog table."
    )
    master: str | None = Field(
        default=None, description="spark: the master URL (`local[2]`, `spark://…`) or Spark Connect `sc://…`."
    )
    description: str = ""
    privacy_unit: str
    one_row_per_unit: bool = Field(
        description="True when each privacy unit has at most one row; contribution bounding is skipped."
    )
    contribution: Contribution | None = Field(
        default=None, description="Required unless one_row_per_unit: the bounds on each unit's contribution."
    )
    budget: Budget
    query: QueryLimits = QueryLimits()
    suppression: Suppression = Suppression()
    append_only: AppendOnly | None = Field(
        default=None,
        description="Time buckets are released once complete (docs/analysts.md).",
    )
    max_groups: int = Field(1000, ge=1, description="Largest number of groups one query may release.")
    detectors: Detectors = Detectors()
    columns: dict[str, Column]

    @model_validator(mode="after")
    def _engine_has_its_settings(self) -> Dataset:
        if self.engine == "duckdb" and not self.source:
            raise ValueError("a duckdb dataset needs a source (a file, glob or folder)")
        if self.engine == "postgres" and not (self.dsn and self.table):
            raise ValueError("a postgres dataset needs a dsn and a table")
        if self.engine == "spark" and (not self.master or bool(self.source) == bool(self.table)):
            raise ValueError("a spark dataset needs a master and either a source or a table")
        if self.engine != "postgres" and self.dsn:
            raise ValueError("dsn applies to postgres datasets only")
        return self

    @model_validator(mode="after")
    def _gaussian_needs_delta(self) -> Dataset:
        if self.query.mechanism == "gaussian" and self.budget.delta is None:
            raise ValueError("the Gaussian mechanism needs an (ε, δ) budget: set budget.delta")
        return self

    @model_validator(mode="after")
    def _contribution_is_bounded(self) -> Dataset:
        if not self.one_row_per_unit and self.contribution is None:
            raise ValueError("a dataset with several rows per unit must declare contribution bounds")
        return self

    def bounds(self) -> Contribution:
        """The contribution bounds in force (one row per unit is one group, one row)."""
        return self.contribution if self.contribution is not None else Contribution()

    @model_validator(mode="after")
    def _unit_is_a_column(self) -> Dataset:
        if self.privacy_unit not in self.columns:
            raise ValueError(f"privacy_unit {self.privacy_unit!r} is not one of the columns")
        if self.append_only is not None:
            column = self.columns.get(self.append_only.column)
            if column is None or column.type not in ("date", "timestamp") or not column.bucketable:
                raise ValueError(
                    f"append_only.column {self.append_only.column!r} must be a date or timestamp column "
                    "with earliest and latest"
                )
        for name in self.columns:
            if name != name.lower():
                raise ValueError(f"column names must be lower case: {name!r}")
        return self


class DauRelease(_Frozen):
    """Daily active users: one Laplace release per day (δ = 0), sensitivity 1 (one person, one day)."""

    epsilon: float = Field(0.3, gt=0, le=10, description="ε of each day's release (Laplace noise, b = 1/ε).")
    monthly_cap: float = Field(
        3.0, gt=0, description="Most ε spent on DAU releases of one calendar month's days (UTC)."
    )


class MauRelease(_Frozen):
    """Monthly active users over a rolling window: Gaussian releases, sensitivity 1 per window."""

    epsilon: float = Field(0.5, gt=0, le=10, description="ε of each window's release at `delta`.")
    delta: float = Field(1e-6, gt=0, lt=1e-3, description="δ of each release (Gaussian noise).")
    window_days: int = Field(
        30, ge=1, le=90, description="The longest window asked for; windows of fewer days may be asked."
    )
    monthly_cap: float = Field(
        3.5,
        gt=0,
        description="Most ε (composed at `delta` by the accountant) spent on windows ending in one "
        "calendar month (UTC).",
    )


_EVENT_COLUMNS = ("user_id", "ts", "op", "day", "pseudonym", "segment")


class Segment(_Frozen):
    """A public column of an activity dataset (e.g. platform): DAU and MAU by its values."""

    values: tuple[str, ...] = Field(
        ..., min_length=1, max_length=200, description="Its public values; events with another are refused."
    )
    per_person: int = Field(
        1,
        ge=1,
        le=20,
        description="The most values one person counts in per day (DAU) or window (MAU); beyond it, "
        "the values of their earliest events count.",
    )

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(values)) != len(values) or any(not v.strip() for v in values):
            raise ValueError("segment values must be distinct and not empty")
        return values


class ContinualRelease(_Frozen):
    """A daily series released by the flippancy-capped tree mechanism (docs/activity.md)."""

    metric: Literal["dau", "mau"] = Field(
        "mau", description="The series the tree releases: DAU, or MAU over mau.window_days."
    )
    epsilon: float = Field(1.0, gt=0, le=10, description="ε of one epoch's whole tree, at `delta`.")
    delta: float = Field(1e-6, gt=0, lt=1e-3, description="δ of one epoch's tree (Gaussian noise).")
    changes: int = Field(
        2,
        ge=1,
        le=31,
        description="The most times one person's presence in the series may switch in an epoch; "
        "switches beyond are not counted (a person can always be switched off).",
    )


class ActivityDataset(_Frozen):
    """An activity stream `(user_id, ts, op)` counted as DAU and MAU with user-level DP (docs/activity.md)."""

    kind: Literal["activity"]
    description: str = ""
    user_id: str = Field("user_id", description="The name of the user id column in COPY, INSERT and DELETE.")
    time: str = Field("ts", description="The name of the event time column (a timestamp, UTC if no zone).")
    dau: DauRelease = DauRelease()
    mau: MauRelease = MauRelease()
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the released intervals.")
    key_epoch: Literal["month"] = Field(
        "month",
        description="Pseudonym keys change every calendar month (UTC), and on the day an admin's "
        "`privacylens rotate-salt` names.",
    )
    segments: dict[str, Segment] = Field(
        default_factory=dict,
        description="Public columns events may carry (COPY ... (user_id, ts, op, platform)), released "
        "by privacylens.dau_by / mau_by.",
    )
    continual: ContinualRelease | None = Field(
        None,
        description="Release this metric's daily series by the tree mechanism: one charge per key "
        "epoch for every day of it, instead of one per day.",
    )
    distinct_count: str = Field(
        "exact",
        description="How releases count distinct people: exact (the only backend with a proven "
        "sensitivity; sketches are for `privacylens estimate`).",
    )
    retention_days: int = Field(
        400,
        ge=60,
        description="Events and pseudonym keys of months that ended more than this many days ago are "
        "deleted (crypto-shredding). Released values are kept.",
    )
    complete_after: str = Field(
        "1 hour",
        description="How long after a day ends its events are complete: until then the day (and windows "
        "ending on it) are pending, at no cost.",
    )
    future_grace: str = Field(
        "5 minutes", description="Events dated later than now by more than this are refused."
    )

    @field_validator("complete_after", "future_grace")
    @classmethod
    def _is_an_interval(cls, value: str) -> str:
        parse_interval(value)
        return value

    @field_validator("distinct_count")
    @classmethod
    def _exact_only(cls, value: str) -> str:
        if value in ("kmv", "theta", "hll", "hyperloglog", "sketch"):
            raise ValueError(
                f"releases cannot use a {value} sketch: one more person can move a sketch's estimate by "
                "about n/k, not by 1, so noise calibrated to one person would not protect them. Use "
                "distinct_count: exact; sketch estimates are for admins: privacylens estimate --backend "
                f"{value if value in ('kmv', 'theta') else 'theta'}"
            )
        if value != "exact":
            raise ValueError(f"distinct_count is exact (the only release backend), not {value!r}")
        return value

    @model_validator(mode="after")
    def _names(self) -> ActivityDataset:
        for name in (self.user_id, self.time):
            if name != name.lower() or not name.isidentifier():
                raise ValueError(f"column names must be lower-case identifiers: {name!r}")
        if self.user_id == self.time:
            raise ValueError("user_id and time must be different columns")
        for name in self.segments:
            if not name.isidentifier() or name != name.lower() or name in _EVENT_COLUMNS:
                raise ValueError(f"segment {name!r} must be a lower-case identifier, not {_EVENT_COLUMNS}")
        return self

    def lag(self) -> dt.timedelta:
        return parse_interval(self.complete_after)

    def grace(self) -> dt.timedelta:
        return parse_interval(self.future_grace)


class User(_Frozen):
    password: str | None = Field(
        default=None,
        description="SCRAM-SHA-256 verifier, made by `privacylens hash-password`; omit for token-only users.",
    )
    role: Role

    @field_validator("password")
    @classmethod
    def _is_scram_verifier(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("SCRAM-SHA-256$"):
            raise ValueError("store a SCRAM-SHA-256 verifier (privacylens hash-password), never a password")
        return value


class Policy(_Frozen):
    datasets: dict[str, Dataset]
    activities: dict[str, ActivityDataset] = Field(
        default={},
        description="Filled by the loader: the `kind: activity` entries of `datasets` (DAU/MAU streams).",
    )
    users: dict[str, User] = {}
    version: str = Field("", description="Filled by the loader: a hash of the policy file.")
    base_dir: str = Field("", description="Filled by the loader: the folder sources are relative to.")

    @model_validator(mode="after")
    def _names_are_lower_case(self) -> Policy:
        for name in [*self.datasets, *self.activities]:
            if name != name.lower():
                raise ValueError(f"dataset names must be lower case: {name!r}")
        both = set(self.datasets) & set(self.activities)
        if both:
            raise ValueError(f"a dataset name is used twice: {sorted(both)}")
        return self

    def answer_version(self, dataset: str) -> str:
        """A hash of what in this dataset's policy can change an answer: where its data is, its privacy
        unit, bounds, limits, suppression and columns. Descriptions, its budget and detectors, users
        and every other dataset are left out, so editing them keeps cached answers valid."""
        spec = self.datasets[dataset].model_dump(mode="json", exclude={"description", "budget", "detectors"})
        for column in spec["columns"].values():
            column.pop("description", None)
        text = json.dumps({"spec": spec, "base_dir": self.base_dir}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def source_path(self, dataset: str) -> Path:
        """The dataset's source, absolute (relative sources are relative to the policy file)."""
        source = self.datasets[dataset].source
        if source is None:
            raise ValueError(f"dataset {dataset} has no source file")
        return Path(self.base_dir) / source


class PolicyError(ValueError):
    """The policy file is missing, not YAML, or does not match the schema."""


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_bytes()
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise PolicyError(f"cannot read policy {path}: {err}") from err
    if not isinstance(raw, dict):
        raise PolicyError(f"policy {path} must be a YAML mapping")
    raw = {**raw, "version": hashlib.sha256(text).hexdigest()[:16], "base_dir": str(path.parent.resolve())}
    raw = split_activities(raw)
    try:
        return Policy.model_validate(raw)
    except ValidationError as err:
        raise PolicyError(f"policy {path} is invalid:\n{err}") from err


def split_activities(raw: dict) -> dict:
    """Move the `kind: activity` entries of `datasets` to `activities`: the two kinds have different
    schemas, and everything that reads `datasets` expects aggregate datasets."""
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict):
        return raw
    activities = {k: v for k, v in datasets.items() if isinstance(v, dict) and v.get("kind") == "activity"}
    rest = {k: v for k, v in datasets.items() if k not in activities}
    for spec in rest.values():
        if isinstance(spec, dict) and spec.get("kind") not in (None, "aggregate"):
            raise PolicyError(
                f"unknown dataset kind {spec.get('kind')!r}: use aggregate (the default) or activity"
            )
    rest = {
        k: {key: val for key, val in v.items() if key != "kind"} if isinstance(v, dict) else v
        for k, v in rest.items()
    }
    return {**raw, "datasets": rest, "activities": activities}
