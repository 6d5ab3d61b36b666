"""(ε, δ) accounting with Google's dp-accounting: the same RDP accountant calibrates and charges.

A query on an (ε, δ) dataset is a composition of noise events, one per measure: a Gaussian event with
noise multiplier z = σ / Δ₂, or a Laplace event with multiplier b / Δ₁. Calibration picks the single
multiplier z for all of a query's Gaussian measures so that the composed event meets the query's
(ε, δ) under this accountant; charging composes every event an analyst has been charged in the
period with the new one and checks ε at the dataset's δ against the budget.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import dp_accounting
from dp_accounting import rdp
from dp_accounting.mechanism_calibration import calibrate_dp_mechanism


@dataclass(frozen=True)
class NoiseEvent:
    kind: str  # "gaussian" | "laplace"
    noise_multiplier: float  # σ/Δ₂ or b/Δ₁

    def dp_event(self) -> dp_accounting.DpEvent:
        if self.kind == "gaussian":
            return dp_accounting.GaussianDpEvent(self.noise_multiplier)
        return dp_accounting.LaplaceDpEvent(self.noise_multiplier)


def gaussian_multiplier(measures: int, epsilon: float, delta: float) -> float:
    """The noise multiplier z such that `measures` Gaussian releases at z compose to (ε, δ)."""

    def event(z: float) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), measures)

    return float(
        calibrate_dp_mechanism(rdp.RdpAccountant, event, target_epsilon=epsilon, target_delta=delta, tol=1e-6)
    )


def epsilon_of(events: Sequence[NoiseEvent], delta: float) -> float:
    """ε at δ of all these events composed, by the RDP accountant."""
    if not events:
        return 0.0
    accountant = rdp.RdpAccountant()
    for event, count in Counter(events).items():  # identical events compose as one, `count` times
        accountant.compose(event.dp_event(), count)
    return float(accountant.get_epsilon(delta))


def to_json(events: Sequence[NoiseEvent]) -> str:
    return json.dumps([[e.kind, e.noise_multiplier] for e in events])


def from_json(text: str) -> list[NoiseEvent]:
    return [NoiseEvent(kind, float(z)) for kind, z in json.loads(text)]
