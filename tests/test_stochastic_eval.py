"""Stochastic models: the scoring rule of docs/protocol.md and its intervals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snnbench.attacks import create_attack
from snnbench.evaluate import EvalConfig, ModelInfo, run_attacks
from snnbench.store import ResultStore


class CoinModel(nn.Module):
    """Predicts the true class with probability ``p`` on every call, whatever the input."""

    stochastic = True

    def __init__(self, labels: torch.Tensor, p: float, classes: int = 10) -> None:
        super().__init__()
        self.p, self.classes = p, classes
        self.register_buffer("labels", labels)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # the sample index is encoded in the first pixel
        index = (x[:, 0, 0, 0] * 1000).round().long()
        y = self.labels[index]
        right = torch.rand(n) < self.p
        wrong = (y + 1 + torch.randint(0, self.classes - 1, (n,))) % self.classes
        target = torch.where(right, y, wrong)
        return (
            nn.functional.one_hot(target, self.classes).float()
            + self.bias
            + 0 * x.sum((1, 2, 3))[:, None]
        )


def test_intervals_cover_a_known_rate():
    torch.manual_seed(0)
    n, p = 300, 0.7
    y = torch.arange(n) % 10
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    model = CoinModel(y, p)
    info = ModelInfo("coin", "0" * 64, "none", "coin", "digits", 1, True)
    covered = 0
    for seed in range(10):
        with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
            (card,) = run_attacks(
                model,
                info,
                [create_attack("fgsm", 0.0)],
                x,
                y,
                store,
                EvalConfig(k_eval=9, seed=seed, chunk_size=100),
                torch.device("cpu"),
            )
        lo, hi = card["result"]["clean_ci95"]
        covered += lo <= p <= hi
        assert card["eval"]["k_eval"] == 9 and card["result"]["ci"] == "bootstrap"
    assert covered >= 8  # a 95% interval: 10 of 10 expected, 8 tolerates chance


def test_report_draws_remove_the_winners_curse():
    """eps = 0 leaves x unchanged: selecting the worse of two draws on the same input and
    reporting it with the same draws would bias robust accuracy below clean accuracy; fresh
    report draws keep it unbiased."""
    torch.manual_seed(0)
    n, p = 400, 0.5
    y = torch.arange(n) % 10
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    model = CoinModel(y, p)
    info = ModelInfo("coin", "1" * 64, "none", "coin", "digits", 1, True)
    with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
        (card,) = run_attacks(
            model,
            info,
            [create_attack("fgsm", 0.0)],
            x,
            y,
            store,
            EvalConfig(k_eval=3, seed=1),
            torch.device("cpu"),
        )
    result = card["result"]
    assert abs(result["robust_acc"] - p) < 0.06 and abs(result["clean_acc"] - p) < 0.06
    assert np.isclose(result["robust_acc"], result["clean_acc"], atol=0.08)
