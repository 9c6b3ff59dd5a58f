"""Intervals and aggregates (evaluation.md section 5)."""
from __future__ import annotations

import numpy as np
import pytest

from snnbench.metrics import accuracy_interval, decode_counts, encode_counts, mra, wilson, worst_case


def test_wilson_known_values():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def test_wilson_covers_the_true_rate():
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 200, 2000
    hits = rng.binomial(n, p, size=trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson(int(h), n) for h in hits)])
    assert 0.93 <= covered <= 0.97


def test_bootstrap_for_several_draws():
    counts = np.array([3, 0, 2, 1, 3, 3])
    acc, (lo, hi), method = accuracy_interval(counts, 3)
    assert method == "bootstrap" and acc == pytest.approx(12 / 18) and lo < acc < hi


def test_mra_is_the_minimum_and_worst_case_is_per_sample():
    assert mra([0.5, 0.3, None, 0.4]) == 0.3
    a, b = np.array([1, 0, 1, 1]), np.array([1, 1, 0, 1])
    assert worst_case([a, b], 1).tolist() == [1, 0, 0, 1]   # 0.5 <= min(0.75, 0.75)


def test_counts_encoding_round_trip():
    counts = np.array([0, 3, 9, 255], np.uint8)
    assert decode_counts(encode_counts(counts)).tolist() == counts.tolist()
