"""Noise mechanisms (Laplace and Gaussian), drawn from OpenDP's float-safe samplers.

OpenDP samples Laplace noise exactly on the integers (counts) and, for floats, exactly on a fine
power-of-two grid before rounding, so the output distribution has no floating-point holes of the
kind Mironov (2012) exploited. OpenDP draws its randomness from the operating system's CSPRNG and
cannot be seeded: that is deliberate, and why the statistical tests use honest tolerances instead of
fixed seeds (docs/decisions/0003-noise-from-opendp.md).

The mechanism math is named as in the literature: a query with L1 `sensitivity` Δ released with
privacy loss ε gets Laplace noise of scale b = Δ / ε.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import opendp.prelude as dp

dp.enable_features("contrib")


@dataclass(frozen=True)
class Laplace:
    """The Laplace mechanism with scale b; `discrete` noise is integer-valued (for counts)."""

    scale: float
    discrete: bool = False

    @classmethod
    def calibrate(cls, sensitivity: float, epsilon: float, discrete: bool = False) -> Laplace:
        if sensitivity <= 0 or epsilon <= 0:
            raise ValueError("sensitivity and epsilon must be positive")
        return cls(scale=sensitivity / epsilon, discrete=discrete)

    def release(self, values: Sequence[float]) -> list[float]:
        """Add independent noise to each value (one draw per value)."""
        return _release("laplace", self.scale, self.discrete, values)

    def tail(self, k: float) -> float:
        """P(|Z| > k) for the noise Z of this mechanism."""
        b = self.scale
        if self.discrete:
            # P(Z = z) ∝ exp(-|z|/b) on the integers; P(|Z| > k) = 2 e^{-(⌊k⌋+1)/b} / (1 + e^{-1/b}).
            k_int = math.floor(k)
            return min(1.0, 2 * math.exp(-(k_int + 1) / b) / (1 + math.exp(-1 / b)))
        return math.exp(-k / b)

    def half_width(self, alpha: float) -> float:
        """The smallest k with P(|Z| > k) <= alpha, so that value ± k covers with probability 1 - alpha."""
        b = self.scale
        if not self.discrete:
            return b * math.log(1 / alpha)
        # Invert the discrete tail, then step to the exact integer (guards float error at the edge).
        k = max(0, math.ceil(b * math.log(2 / (alpha * (1 + math.exp(-1 / b)))) - 1))
        while k > 0 and self.tail(k - 1) <= alpha:
            k -= 1
        while self.tail(k) > alpha:
            k += 1
        return float(k)

    def below(self, t: float) -> float:
        """P(Z < t) for the noise Z (used for suppression probabilities)."""
        b = self.scale
        if self.discrete:
            z = math.ceil(t) - 1  # P(Z < t) = P(Z <= ceil(t) - 1) on the integers
            if z < 0:
                return math.exp((z + 1) / b) / (1 + math.exp(-1 / b)) * math.exp(-1 / b)
            return 1 - math.exp(-(z + 1) / b) / (1 + math.exp(-1 / b))
        return 0.5 * math.exp(t / b) if t < 0 else 1 - 0.5 * math.exp(-t / b)

    def standard_deviation(self) -> float:
        b = self.scale
        if self.discrete:
            r = math.exp(-1 / b)
            return math.sqrt(2 * r) / (1 - r)
        return math.sqrt(2) * b


@dataclass(frozen=True)
class Gaussian:
    """The Gaussian mechanism with standard deviation σ; `discrete` noise is integer-valued.

    Calibrated by the accountant (privacy.accounting), never by a closed formula, so the accountant
    that charges is the one that chose σ.
    """

    scale: float  # σ
    discrete: bool = False

    def release(self, values: Sequence[float]) -> list[float]:
        """Add independent noise to each value (one draw per value)."""
        return _release("gaussian", self.scale, self.discrete, values)

    def _discrete_mass(self) -> tuple[int, list[float]]:
        """(radius, normalised P(Z = z) for z in -radius..radius); the mass beyond is below 1e-15."""
        radius = int(math.ceil(9 * self.scale)) + 1
        weights = [math.exp(-(z * z) / (2 * self.scale * self.scale)) for z in range(-radius, radius + 1)]
        total = sum(weights)
        return radius, [w / total for w in weights]

    def tail(self, k: float) -> float:
        """P(|Z| > k)."""
        if not self.discrete or self.scale > 2000:
            return math.erfc(k / (self.scale * math.sqrt(2)))
        radius, mass = self._discrete_mass()
        return sum(p for z, p in zip(range(-radius, radius + 1), mass, strict=True) if abs(z) > k)

    def half_width(self, alpha: float) -> float:
        """The smallest k with P(|Z| > k) <= alpha (an integer for discrete noise)."""
        continuous = self.scale * NormalDist().inv_cdf(1 - alpha / 2)
        if not self.discrete:
            return continuous
        k = max(0, math.floor(continuous) - 1)
        while self.tail(k) > alpha:
            k += 1
        return float(k)

    def below(self, t: float) -> float:
        """P(Z < t)."""
        if not self.discrete or self.scale > 2000:
            return 0.5 * math.erfc(-t / (self.scale * math.sqrt(2)))
        radius, mass = self._discrete_mass()
        return sum(p for z, p in zip(range(-radius, radius + 1), mass, strict=True) if z < t)

    def standard_deviation(self) -> float:
        return self.scale


Mechanism = Laplace | Gaussian


def mechanism(kind: str, scale: float, discrete: bool) -> Mechanism:
    return Gaussian(scale, discrete) if kind == "gaussian" else Laplace(scale, discrete)


def _release(kind: str, scale: float, discrete: bool, values: Sequence[float]) -> list[float]:
    if not values:
        return []
    if discrete:
        return [float(v) for v in _vector_sampler(kind, scale, True)([int(v) for v in values])]
    return list(_vector_sampler(kind, scale, False)([float(v) for v in values]))


@lru_cache(maxsize=512)
def _vector_sampler(kind: str, scale: float, discrete: bool):  # type: ignore[no-untyped-def]
    """OpenDP's Laplace or Gaussian measurement over vectors of integers or floats, per scale."""
    atom = dp.atom_domain(T=int) if discrete else dp.atom_domain(T=float, nan=False)
    element = int if discrete else float
    if kind == "gaussian":
        return dp.m.make_gaussian(dp.vector_domain(atom), dp.l2_distance(T=element), scale=scale)
    return dp.m.make_laplace(dp.vector_domain(atom), dp.l1_distance(T=element), scale=scale)
