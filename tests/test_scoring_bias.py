"""The stochastic scoring against a model whose per-sample truth is known exactly
(benchmarks/scoring_bias.py): report draws carry no winner's curse in any column, the worst
case or the cascade, and the old per-sample minimum of report counts would have been caught."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snnbench.evaluate import EvalConfig, ModelInfo, run_attacks
from snnbench.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location(
        "scoring_bias", ROOT / "benchmarks" / "scoring_bias.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["scoring_bias"] = module
    spec.loader.exec_module(module)
    return module


def test_the_known_model_is_correct_with_its_table_probability(sim):
    n = 200
    table = np.full((2, n), 0.3)
    x, y = sim.inputs(n)
    model = sim.KnownModel(table, y)
    torch.manual_seed(0)
    hits = np.mean([(model(x).argmax(1) == y).float().mean().item() for _ in range(20)])
    assert abs(hits - 0.3) < 0.03


def test_report_draws_are_unbiased_for_the_chosen_candidates(sim):
    gaps = sim.measure(reps=8, n=360, k_eval=3)
    for column, truth in gaps.items():
        if column == "min reports":
            continue
        bias, se = truth["chosen"]
        assert abs(bias) < max(0.5, 3 * se), (column, bias, se)
        # never below what an attacker who knew every p could reach: an upper bound
        assert truth["oracle"][0] > -3 * truth["oracle"][1], column
    # the replaced rule (a minimum of report counts) reads below even the oracle
    assert gaps["min reports"]["oracle"][0] < -1.0


def test_ties_go_to_the_adversarial_candidate_on_a_known_model(sim, tmp_path):
    """Clean and adversarial inputs equally likely correct (p = 0.9): the attack's output is
    chosen when its selection count is at most the clean one's, P = (1 + P(tie)) / 2 = 0.80;
    ties sent back to the clean input would give (1 - P(tie)) / 2 = 0.20."""
    n = 300
    table = np.full((2, n), 0.9)
    x, y = sim.inputs(n)
    attack = sim.KnownAttack("known1", 1.0, params={"candidate": 1})
    info = ModelInfo("known", "tie", "known", "stub", "digits", 4, True)
    with ResultStore(tmp_path / "r.sqlite") as store:
        (card,) = run_attacks(
            sim.KnownModel(table, y),
            info,
            [attack],
            x,
            y,
            store,
            EvalConfig(k_eval=3, seed=1, chunk_size=n),
            torch.device("cpu"),
        )
    origin = sim.decode_counts(card["per_sample"]["origin"])
    tie = sum(math.comb(3, c) ** 2 * 0.9 ** (2 * c) * 0.1 ** (6 - 2 * c) for c in range(4))
    assert abs(origin.mean() - (1 + tie) / 2) < 0.08
