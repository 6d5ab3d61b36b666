"""One DAU or MAU release from an exact distinct count: its mechanism, noise and interval.

DAU(d) moves by at most 1 when one person's whole trace is added or removed, and so does one MAU
window: a DAU release is discrete Laplace with b = 1/ε (pure ε), a MAU release discrete Gaussian
with the σ the accountant finds for (ε, δ) (`privacy.accounting.gaussian_scale`), the accountant
that charges it. The interval is the noise's own (post-processing of the released value).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

from privacy.accounting import NoiseEvent, gaussian_scale
from privacy.intervals import additive
from privacy.mechanisms import Gaussian, Laplace, Mechanism
from rewriter.policy import ActivityDataset

Metric = Literal["dau", "mau"]


@dataclass(frozen=True)
class Release:
    """One released DAU or MAU value, as stored and re-served."""

    metric: Metric
    day: dt.date
    window_days: int
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    epsilon: float  # what this release was charged
    delta: float
    mechanism: str
    scale: float
    released_at: str


def mechanism_of(metric: Metric, spec: ActivityDataset) -> tuple[Mechanism, NoiseEvent]:
    """The noise of one release and the event the accountant charges for it (sensitivity 1)."""
    if metric == "dau":
        scale = 1 / spec.dau.epsilon
        return Laplace(scale, discrete=True), NoiseEvent("discrete_laplace", scale, 1.0)
    sigma = gaussian_scale(spec.mau.epsilon, spec.mau.delta)
    return Gaussian(sigma, discrete=True), NoiseEvent("discrete_gaussian", sigma, 1.0)


def segment_mechanism(metric: Metric, spec: ActivityDataset, per_person: int) -> tuple[Mechanism, NoiseEvent]:
    """The noise of each value's count in a release by segment, and the one event the whole
    vector is charged as: one person moves at most `per_person` counts by 1 (L1 = per_person,
    L2 = sqrt(per_person))."""
    if per_person == 1:
        return mechanism_of(metric, spec)
    if metric == "dau":
        scale = per_person / spec.dau.epsilon
        return Laplace(scale, discrete=True), NoiseEvent("discrete_laplace", scale, float(per_person))
    sigma = math.sqrt(per_person) * gaussian_scale(spec.mau.epsilon, spec.mau.delta)
    # continuous: the accountant models an L2 sensitivity of sqrt(k) exactly for it
    return Gaussian(sigma), NoiseEvent("gaussian", sigma, math.sqrt(per_person))


def release(
    metric: Metric,
    spec: ActivityDataset,
    day: dt.date,
    window_days: int,
    exact: int,
    noise: Mechanism | None = None,
) -> Release:
    """The noisy value of an exact count, with its interval; `epsilon` is the nominal ε until the
    ledger records what the accountant charged. `noise` defaults to the metric's own."""
    noise = noise or mechanism_of(metric, spec)[0]
    (value,) = noise.release([float(exact)])
    interval = additive(value, noise, spec.confidence)
    nominal = spec.dau.epsilon if metric == "dau" else spec.mau.epsilon
    delta = 0.0 if metric == "dau" else spec.mau.delta
    return Release(
        metric,
        day,
        window_days,
        float(value),
        interval.low,
        interval.high,
        spec.confidence,
        nominal,
        delta,
        _name(noise),
        noise.scale,
        dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    )


def _name(noise: Mechanism) -> str:
    kind = "laplace" if isinstance(noise, Laplace) else "gaussian"
    return f"discrete_{kind}" if noise.discrete else kind
