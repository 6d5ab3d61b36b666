"""Approximate distinct counts of pseudonyms for internal use: KMV and Apache DataSketches Theta.

Both read a stream of 64-bit hashes in fixed memory (k values) and estimate how many distinct ones
went by, with a relative standard error of about 1/sqrt(k). They are for admins' estimates at
scale (`privacylens estimate`), never for releases: one more person moves an estimate by about
n/k with probability about k/n (far more than the 1 a release's noise is calibrated to), so a noised
sketch is not differentially private. Releases use exact counts; the policy refuses a sketch
backend for them (`distinct_count`). Estimates are computed from the stored events with every
erasure applied, so no sketch state outlives an erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from datasketches import update_theta_sketch

Backend = Literal["exact", "kmv", "theta"]
BACKENDS: tuple[Backend, ...] = ("exact", "kmv", "theta")


@dataclass(frozen=True)
class Estimate:
    backend: Backend
    value: float
    low: float  # about two standard errors either side (exact: the value)
    high: float
    retained: int  # hashes held at the end (exact: every distinct one)


class Kmv:
    """K minimum values: the k smallest distinct hashes seen; with the k-th at fraction u of the
    hash range, about (k - 1) / u distinct values went by."""

    def __init__(self, k: int = 4096) -> None:
        if k < 3:
            raise ValueError("k must be at least 3")
        self.k = k
        self.smallest = np.empty(0, dtype=np.uint64)

    def update(self, hashes: np.ndarray) -> None:
        if len(self.smallest) == self.k:
            hashes = hashes[hashes < self.smallest[-1]]  # most of a long stream stops here
        if len(hashes):
            self.smallest = np.union1d(self.smallest, hashes.astype(np.uint64))[: self.k]

    def estimate(self) -> Estimate:
        held = len(self.smallest)
        if held < self.k:
            return Estimate("kmv", float(held), float(held), float(held), held)
        value = (self.k - 1) / (float(self.smallest[-1]) / 2.0**64)
        spread = 2 / float(np.sqrt(self.k - 2))
        return Estimate("kmv", value, value * (1 - spread), value * (1 + spread), held)


class Theta:
    """Apache DataSketches' Theta sketch (the `datasketches` package), nominal k = 2**lg_k."""

    def __init__(self, lg_k: int = 12) -> None:
        self.sketch = update_theta_sketch(lg_k)

    def update(self, hashes: np.ndarray) -> None:
        update = self.sketch.update
        for value in hashes.view(np.int64).tolist():  # the sketch hashes them again, as int64
            update(value)

    def estimate(self) -> Estimate:
        s = self.sketch
        bounds = s.get_lower_bound(2), s.get_upper_bound(2)  # two standard deviations
        return Estimate("theta", s.get_estimate(), *bounds, s.num_retained)


def new_sketch(backend: Backend, k: int = 4096) -> Kmv | Theta:
    """An empty sketch of about k hashes (Theta: nominal k rounded down to a power of two). Feeding
    a hash twice changes nothing, so a retried read may feed a batch again."""
    if backend == "kmv":
        return Kmv(k)
    if backend == "theta":
        return Theta(int(np.log2(k)))
    raise ValueError(f"no sketch backend {backend!r}: kmv or theta")
