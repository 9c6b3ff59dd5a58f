"""benchmarks/headline_vs_autoattack.py: the subset option compares like with like."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from snnbench import api
from snnbench.metrics import decode_counts

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "headline_vs_autoattack.py"


def load_script():
    spec = importlib.util.spec_from_file_location("headline_vs_autoattack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_kth_sample_is_compared_with_the_headline_on_the_same_samples(home, monkeypatch):
    api.attack(home=home, attacks=["fgsm", "pgd10"], n=60, device="cpu")
    script = load_script()
    seen = []

    def fake_autoattack(model, x, y, eps, stochastic, draws):  # AutoAttack itself: too slow here
        seen.append(y.clone())
        return 0.25

    monkeypatch.setattr(script, "autoattack_accuracy", fake_autoattack)
    whole = script.compare(home, None, draws=1)
    subset = script.compare(home, None, draws=1, every=4)
    row = api.leaderboard(home).main_rows()[0]
    counts = decode_counts(row["headline"]["per_sample"])
    assert whole[0]["n"] == 60 and len(seen[0]) == 60
    assert whole[0]["headline"] == row["headline"]["acc"]
    assert subset[0]["n"] == 15 and torch.equal(seen[1], seen[0][::4])
    assert subset[0]["headline"] == np.mean(counts[::4])
    low, high = subset[0]["ci95"]
    assert low <= subset[0]["headline"] <= high
    assert subset[0]["gap"] == 100 * (subset[0]["headline"] - 0.25)
