"""(ε, δ) accounting with Google's dp-accounting: each noise draw accounted as what it is.

A query on an (ε, δ) dataset is a composition of noise events. Each event is one noise draw on one
coordinate of a measure's vector (one group, or one histogram bin) and names the mechanism that drew
it: discrete Laplace for counts, Laplace for sums, Gaussian or discrete Gaussian. Neighbouring
datasets differ by one privacy unit, which moves at most k coordinates of a measure by at most c each
(k groups with at most m rows: c = m for a count, m · bound for a sum), so a measure is charged as k
events of sensitivity c. Where a unit's rows may spread over the coordinates of one vector in any
way (the bins of a histogram with more than one row per unit), the vector is charged as a pure
ε = Δ₁ / b event, the bound that holds for every mechanism that is ε-DP.

Charging composes every event an analyst has been charged in the period with the new ones by
privacy loss distributions (PLD, pessimistic discretisation: an upper bound on the true ε at δ).
Calibration picks the Gaussian noise multiplier with the RDP accountant (`gaussian_multiplier`);
PLD charging of the same noise is never above RDP's figure.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import dp_accounting
from dp_accounting import rdp
from dp_accounting.mechanism_calibration import calibrate_dp_mechanism
from dp_accounting.pld import common
from dp_accounting.pld import privacy_loss_distribution as pld

EventKind = Literal["laplace", "discrete_laplace", "gaussian", "discrete_gaussian", "pure"]
DISCRETISATION = 1e-3  # PLD value grid; pessimistic rounding, so ε is only ever overstated


@dataclass(frozen=True)
class NoiseEvent:
    """One noise draw: its mechanism, its scale (b or σ) and the most one unit moves its input.

    For `pure`, `sensitivity / scale` is the ε of an ε-DP release accounted by that bound alone.
    """

    kind: EventKind
    scale: float
    sensitivity: float

    def distribution(self) -> pld.PrivacyLossDistribution:
        return _distribution(self, 1)


def events_of(
    kind: str, discrete: bool, scale: float, per_coordinate: float, coordinates: int
) -> list[NoiseEvent]:
    """The events of one measure: `coordinates` draws a unit can move by `per_coordinate` each."""
    if kind == "gaussian":
        name: EventKind = "discrete_gaussian" if discrete else "gaussian"
    else:
        name = "discrete_laplace" if discrete else "laplace"
    return [NoiseEvent(name, scale, per_coordinate)] * coordinates


def pure_event(scale: float, l1_sensitivity: float) -> NoiseEvent:
    """An ε = Δ₁ / b release (Laplace noise on a vector whose shape a unit may move freely)."""
    return NoiseEvent("pure", scale, l1_sensitivity)


def gaussian_multiplier(measures: int, epsilon: float, delta: float) -> float:
    """The noise multiplier z such that `measures` Gaussian releases at z compose to (ε, δ)."""

    def event(z: float) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), measures)

    return float(
        calibrate_dp_mechanism(rdp.RdpAccountant, event, target_epsilon=epsilon, target_delta=delta, tol=1e-6)
    )


def epsilon_of(events: Sequence[NoiseEvent], delta: float) -> float:
    """ε at δ of all these events composed (PLD; identical events are self-composed at once)."""
    if not events:
        return 0.0
    composed: pld.PrivacyLossDistribution | None = None
    for event, count in sorted(Counter(events).items(), key=lambda item: repr(item[0])):
        part = _distribution(event, count)
        composed = part if composed is None else composed.compose(part)
    assert composed is not None
    return float(composed.get_epsilon_for_delta(delta))


@lru_cache(maxsize=1024)
def _distribution(event: NoiseEvent, count: int) -> pld.PrivacyLossDistribution:
    grid = DISCRETISATION
    if event.kind == "gaussian":
        one = pld.from_gaussian_mechanism(event.scale, event.sensitivity, value_discretization_interval=grid)
    elif event.kind == "discrete_gaussian":
        one = pld.from_discrete_gaussian_mechanism(
            event.scale, _integer(event.sensitivity), value_discretization_interval=grid
        )
    elif event.kind == "laplace":
        one = pld.from_laplace_mechanism(event.scale, event.sensitivity, value_discretization_interval=grid)
    elif event.kind == "discrete_laplace":
        # P(x) ∝ exp(-|x| / b): dp-accounting's parameter is 1 / b.
        one = pld.from_discrete_laplace_mechanism(
            1 / event.scale, _integer(event.sensitivity), value_discretization_interval=grid
        )
    else:
        one = pld.from_privacy_parameters(
            common.DifferentialPrivacyParameters(event.sensitivity / event.scale, 0.0),
            value_discretization_interval=grid,
        )
    return one.self_compose(count) if count > 1 else one


def _integer(sensitivity: float) -> int:
    """Discrete mechanisms move by whole numbers; round a float sensitivity up, never down."""
    return max(1, math.ceil(sensitivity - 1e-9))


def to_json(events: Sequence[NoiseEvent]) -> str:
    counted = Counter(events)
    return json.dumps([[e.kind, e.scale, e.sensitivity, n] for e, n in counted.items()])


def from_json(text: str) -> list[NoiseEvent]:
    """Events as stored; rows written before events named their mechanism ([kind, multiplier]) are
    read as the most they could have cost: a Laplace multiplier z as pure ε = 1 / z."""
    out: list[NoiseEvent] = []
    for item in json.loads(text):
        if len(item) == 2:
            kind, z = item
            out.append(
                NoiseEvent("gaussian", float(z), 1.0) if kind == "gaussian" else pure_event(float(z), 1.0)
            )
        else:
            kind, scale, sensitivity, count = item
            out.extend([NoiseEvent(kind, float(scale), float(sensitivity))] * int(count))
    return out


@lru_cache(maxsize=64)
def gaussian_scale(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest σ (to 0.1 %) whose one discrete Gaussian release of an integer query with this L2
    sensitivity costs at most ε at δ by `epsilon_of`: the same accountant that charges it.

    >>> 8.0 < gaussian_scale(0.5, 1e-6) < 8.2
    True
    """
    low, high = 1e-3, 1.0
    while epsilon_of([NoiseEvent("discrete_gaussian", high, sensitivity)], delta) > epsilon:
        low, high = high, high * 2
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        if epsilon_of([NoiseEvent("discrete_gaussian", middle, sensitivity)], delta) > epsilon:
            low = middle
        else:
            high = middle
    return high
