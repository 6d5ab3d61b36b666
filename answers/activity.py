"""One DAU or MAU release from an exact distinct count: its mechanism, noise and interval.

DAU(d) moves by at most 1 when one person's whole trace is added or removed, and so does one MAU
window: a DAU release is discrete Laplace with b = 1/ε (pure ε), a MAU release discrete Gaussian
with the σ the accountant finds for (ε, δ) (`privacy.accounting.gaussian_scale`), the accountant
that charges it. The interval is the noise's own (post-processing of the released value).
"""

from __future__ import annotations

import datetime as dt
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


def release(metric: Metric, spec: ActivityDataset, day: dt.date, window_days: int, exact: int) -> Release:
    """The noisy value of an exact count, with its interval; `epsilon` is the nominal ε until the
    ledger records what the accountant charged."""
    noise, _ = mechanism_of(metric, spec)
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
        "discrete_laplace" if metric == "dau" else "discrete_gaussian",
        noise.scale,
        dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    )
