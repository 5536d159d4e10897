"""Property-based fuzzing of plate maps, file names and pixel data (targets in `fuzz_targets`).

Default run: `FIBROCLASS_FUZZ_EXAMPLES` (25) derandomized cases per target (whole-screen `score`: 2); the
slow test runs 150 per target (`score`: 15), over 600 cases in all. `scripts/fuzz.py` runs random seeds and records the result (docs/robustness.md).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from fuzz_targets import TARGETS, fuzz_runs

EXAMPLES = int(os.environ.get("FIBROCLASS_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_never_crashes(target):
    counter: Counter = Counter()
    fuzz_runs(EXAMPLES, counter)[target]()
    assert counter[target] >= (2 if target == "score" else min(EXAMPLES, 10))


@pytest.mark.slow
def test_fuzz_500_cases_without_an_unhandled_exception():
    counter: Counter = Counter()
    for run in fuzz_runs(150, counter).values():
        run()
    assert sum(counter.values()) >= 500, counter
