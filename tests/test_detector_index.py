"""The detectors' indexed history (answers/detectors.History) finds exactly what a scan of the whole
history finds: the same findings, in the same order, on seeded random histories with trimming."""

from __future__ import annotations

import random

from answers import detectors
from answers.detectors import History, Release, find
from rewriter.policy import Detectors
from rewriter.question import Question

CONDITIONS = [
    "age > 30",
    "age > 40",
    "department = 'Sales'",
    "salary < 90000",
    "user_id <> 7",
    "hire_date >= '2020-01-01'",
]
GROUPS = [(), ("department",)]
MEASURES = [("COUNT(*)",), ("COUNT(*)", "AVG(salary)"), ("SUM(salary)",)]


def scan_find(new: Release, history: list[Release], config: Detectors, unit_column: str) -> list:
    """The detectors as they were: every earlier release in the window, scanned."""
    if not new.fresh:
        return []
    earlier = [
        r for r in history if r.fresh and r.id != new.id and r.at >= new.at - config.window_hours * 3600
    ]
    found = [
        detectors.differencing(new, earlier, config.differencing.max_units, unit_column),
        detectors.averaging(new, earlier, config.averaging.max_repeats),
        detectors.burst(new, earlier, config.burst.max_queries, config.burst.seconds),
    ]
    return [f for f in found if f is not None]


def release(rng: random.Random, i: int, at: float) -> Release:
    conjuncts = tuple(sorted(set(rng.sample(CONDITIONS, rng.randint(0, 3)))))
    question = Question(rng.choice(MEASURES), rng.choice(GROUPS), conjuncts)
    sizes = tuple(None if rng.random() < 0.1 else rng.uniform(0, 60) for _ in range(2))
    return Release(
        i, at, rng.choice(["ann", "bob", "cy"]), question, sizes, rng.uniform(0.5, 4), rng.random() > 0.1
    )


def test_the_index_finds_what_a_scan_finds() -> None:
    config = Detectors.model_validate(
        {"window_hours": 1, "averaging": {"max_repeats": 3}, "burst": {"max_queries": 6, "seconds": 120}}
    )
    compared = found = 0
    for seed in range(30):
        rng = random.Random(seed)  # the history, not noise
        index, scanned = History(), []
        at = 0.0
        for i in range(1, 300):
            at += rng.expovariate(1 / 30)
            new = release(rng, i, at)
            index.add(new)
            if new.fresh:  # the monitor's history holds fresh answers only
                scanned.append(new)
            limit = 120
            index.keep(at - 3600, limit)
            scanned = [r for r in scanned[-limit:] if r.at >= at - 3600]
            want = scan_find(new, scanned, config, "user_id")
            got = find(new, index, config, "user_id")
            assert got == want, (seed, i)
            compared += 1
            found += len(got)
    assert compared > 8000 and found > 500  # the detectors did fire, often
