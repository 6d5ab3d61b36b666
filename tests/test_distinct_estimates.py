"""Sketch estimates of distinct people (stores/distinct_estimates.py): KMV and DataSketches Theta
are as accurate as 1/sqrt(k) says, apply erasures like exact counts, and are refused for releases
because one more person can move them by far more than 1."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from rewriter.policy import PolicyError, load_policy
from stores.activity import ActivityStore
from stores.activity_input import Batch
from stores.distinct_estimates import Kmv, new_sketch

K = 1024


def stream(seed: int, people: int) -> np.ndarray:
    """Hashes of `people` distinct people, each seen one to five times, shuffled (test data)."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(0, 2**64 - 1, size=people, dtype=np.uint64, endpoint=True)
    seen = np.repeat(distinct, rng.integers(1, 6, size=people))
    return rng.permutation(seen)


@pytest.mark.parametrize("backend", ["kmv", "theta"])
def test_estimates_are_as_accurate_as_their_size_says(backend: str) -> None:
    errors, covered = [], 0
    for seed in range(40):
        sketch = new_sketch(backend, K)
        for part in np.array_split(stream(seed, 50_000), 7):  # fed in batches, as days
            sketch.update(part)
        found = sketch.estimate()
        errors.append(found.value / 50_000 - 1)
        covered += found.low <= 50_000 <= found.high
    rse = float(np.sqrt(np.mean(np.square(errors))))
    assert 0.5 / np.sqrt(K) < rse < 1.6 / np.sqrt(K), rse
    assert covered >= 34  # two standard errors: ~95 % of 40


@pytest.mark.parametrize("backend", ["kmv", "theta"])
def test_below_k_people_the_estimate_is_exact(backend: str) -> None:
    sketch = new_sketch(backend, K)
    sketch.update(stream(3, 700))
    assert sketch.estimate().value == 700


def test_one_more_person_moves_a_sketch_by_far_more_than_one() -> None:
    """Why a sketch-backed release is refused: its sensitivity is not 1. Adding one person whose
    hash lands among the k smallest (probability about k/n) moves the KMV estimate by about n/k."""
    hashes = stream(5, 200_000)
    without = Kmv(K)
    without.update(hashes)
    with_one = Kmv(K)
    with_one.update(np.append(hashes, np.uint64(int(without.smallest[0]) // 2)))
    moved = with_one.estimate().value - without.estimate().value
    assert moved > 100  # n/k is about 195


def test_the_policy_refuses_a_sketch_backend_for_releases(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        """
datasets:
  events:
    kind: activity
    distinct_count: theta
users: {}
"""
    )
    with pytest.raises(
        PolicyError, match="cannot use a theta sketch(.|\n)*privacylens estimate --backend theta"
    ):
        load_policy(policy)


def test_store_estimates_apply_erasures_like_exact_counts(tmp_path: Path) -> None:
    store = ActivityStore(str(tmp_path / "l.sqlite"), tmp_path / "events")
    rows = [(f"u{u}", f"2025-10-{1 + u % 5:02d} 10:00", "+") for u in range(6000)]
    store.ingest("a", Batch.of_rows(rows), now=dt.datetime(2025, 12, 1))
    erased = [(f"u{u}", "2025-10-06 00:00", "-") for u in range(0, 6000, 3)]  # a third of them
    store.ingest("a", Batch.of_rows(erased), now=dt.datetime(2025, 12, 1))
    first, last = dt.date(2025, 10, 1), dt.date(2025, 10, 5)
    exact = store.estimate("a", first, last, "exact")
    assert exact.value == store.distinct_users("a", first, last) == 4000
    for backend in ("kmv", "theta"):
        found = store.estimate("a", first, last, backend, k=K)
        # one draw (pseudonym keys are random): within 5 standard errors, not within its 2-SE range,
        # which misses 5 % of the time (coverage is tested above, on seeded streams)
        assert abs(found.value / 4000 - 1) < 5 / np.sqrt(K) and found.low < found.value < found.high, found
    assert store.estimate("a", dt.date(2025, 10, 7), dt.date(2025, 10, 9), "kmv").value == 0
    store.close()
