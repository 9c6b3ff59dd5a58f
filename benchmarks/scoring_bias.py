"""Bias of snnbench's stochastic scoring, measured on a model whose truth is known exactly.

A stub "model" looks up each input's probability of a correct prediction in a table: row 0 is
the clean input, row a the output of stub attack a. Its prediction on one forward pass is
correct with exactly that probability (a fresh uniform draw from torch's seeded generator),
so every robust accuracy has a known true value:

- *chosen*: the exact accuracy of the inputs the protocol chose per sample (its selection
  draws pick one candidate; the result card's ``origin`` says which), which the fresh report
  draws must estimate without bias (no winner's curse);
- *oracle*: the best candidate per sample, min over the inputs of p: what an attacker who knew
  every p exactly would reach. The gap to it is the price of choosing on k_eval draws; it is
  positive (the number is an upper bound) and shrinks as k_eval grows.

The whole evaluation path runs unchanged (snnbench.evaluate.run_attacks: clean draws,
selection and report draws, the cascade pool; snnbench.report.headline: the worst case over
per-attack runs); each repetition uses another seed. The bias is the mean over repetitions of
(estimate - truth), in points, with its Monte-Carlo standard error.

    python benchmarks/scoring_bias.py [--reps 200] [--k-eval 3] [--n 360]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snnbench.attacks.base import Attack
from snnbench.evaluate import EvalConfig, ModelInfo, run_attacks
from snnbench.metrics import Candidates, decode_counts, worst_candidates
from snnbench.report import card_candidates, headline
from snnbench.store import ResultStore

CLASSES = 10
STRENGTHS = (0.55, 0.62, 0.68)  # share of samples each stub attack (nearly) breaks


class KnownModel(nn.Module):
    """Correct with probability ``table[candidate, sample]``; pixel (0, 0) names the sample,
    pixel (0, 1) the candidate (0 = clean, a = attack a's output)."""

    stochastic = True

    def __init__(self, table: np.ndarray, labels: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float64))
        self.register_buffer("labels", labels.clone())
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        sample = torch.round(x[:, 0, 0, 0] * 1000).long()
        candidate = torch.round(x[:, 0, 0, 1] * 10).long()
        correct = torch.rand(len(x), dtype=torch.float64) < self.table[candidate, sample]
        label = self.labels[sample]
        pred = torch.where(correct, label, (label + 1) % CLASSES)
        return nn.functional.one_hot(pred, CLASSES).float()


@dataclass(frozen=True)
class KnownAttack(Attack):
    """Moves every input to candidate ``params['candidate']`` (eps 1 covers the move)."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:, 0, 0, 1] = self.params["candidate"] / 10
        return out


def population(n: int, rng: np.random.Generator) -> np.ndarray:
    """Digits-like per-sample probabilities: mostly confident clean inputs; each attack breaks
    a share of samples (nested: a stronger attack breaks what a weaker one breaks), leaves
    some half-broken and the rest near their clean probability."""
    clean = np.where(
        rng.random(n) < 0.85,
        rng.uniform(0.95, 1.0, n),
        np.where(rng.random(n) < 0.67, rng.uniform(0.6, 0.95, n), rng.uniform(0.0, 0.6, n)),
    )
    weakness = rng.random(n)
    rows = [clean]
    for strength in STRENGTHS:
        broken = weakness < strength - 0.08
        partly = (weakness >= strength - 0.08) & (weakness < strength + 0.04)
        factor = np.where(
            broken,
            rng.uniform(0.0, 0.1, n),
            np.where(partly, rng.uniform(0.2, 0.8, n), rng.uniform(0.9, 1.0, n)),
        )
        rows.append(clean * factor)
    return np.stack(rows)


def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    return x, torch.arange(n) % CLASSES


def chosen_truth(table: np.ndarray, card: dict, candidates: list[int]) -> float:
    """The exact accuracy of the candidates a run chose: p of each sample's chosen input
    (origin 0 the clean input, m the m-th of ``candidates``)."""
    origin = decode_counts(card["per_sample"]["origin"]).astype(int)
    rows = np.array([0, *candidates])[origin]
    return float(table[rows, np.arange(table.shape[1])].mean())


def one_repetition(rep: int, n: int, k_eval: int) -> dict[str, tuple[float, float]]:
    """Per column, the estimate minus (the chosen candidates' exact accuracy, the best
    candidate's), in points: the bias of the report draws, and the gap to an attacker who
    knows every p exactly."""
    rng = np.random.default_rng(10_000 + rep)
    table = population(n, rng)
    x, y = inputs(n)
    model = KnownModel(table, y)
    ids = list(range(1, len(STRENGTHS) + 1))
    attacks = [KnownAttack(f"known{a}", 1.0, params={"candidate": a}) for a in ids]
    info = ModelInfo("known", f"sim{rep}", "known", "stub", "digits", 4, True)
    config = EvalConfig(k_eval=k_eval, seed=rep, chunk_size=n)
    cpu = torch.device("cpu")
    out: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
        singles = run_attacks(model, info, attacks, x, y, store, config, cpu)
        for card, a in zip(singles, ids):
            estimate = card["result"]["robust_acc"]
            out[card["attack"]["id"]] = (
                100 * (estimate - chosen_truth(table, card, [a])),
                100 * (estimate - np.minimum(table[0], table[a]).mean()),
            )
        best = table.min(axis=0).mean()
        worst = worst_candidates([_renamed(card_candidates(c), a) for c, a in zip(singles, ids)])
        top = headline(singles)["acc"]
        out["worst case"] = (
            100 * (top - table[worst.origin, np.arange(n)].mean()),
            100 * (top - best),
        )
        # the rule this replaced: a per-sample minimum of the runs' report counts
        least = np.min([decode_counts(c["per_sample"]["adv"]) for c in singles], axis=0)
        out["min reports"] = (float("nan"), 100 * (least.mean() / k_eval - best))
        cascade = run_attacks(
            model, info, attacks, x, y, store, config, cpu, cascade=True, per_attack_full=False
        )
        last = max(cascade, key=lambda c: c["eval"]["cascade"]["position"])
        estimate = last["result"]["robust_acc"]
        out["cascade"] = (
            100 * (estimate - chosen_truth(table, last, ids)),
            100 * (estimate - best),
        )
    return out


def _renamed(candidates: Candidates, attack: int) -> Candidates:
    """A single run's candidates with origin = the attack's table row (not 1)."""
    return Candidates(
        candidates.select, candidates.report, np.where(candidates.adversarial, attack, 0)
    )


def measure(reps: int, n: int, k_eval: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Per column and truth ("chosen", "oracle"): (mean of estimate - truth, its standard
    error) in points over ``reps`` repetitions."""
    runs = [one_repetition(rep, n, k_eval) for rep in range(reps)]
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for key in runs[0]:
        for which, truth in enumerate(("chosen", "oracle")):
            gaps = np.array([r[key][which] for r in runs])
            out.setdefault(key, {})[truth] = (
                float(gaps.mean()),
                float(gaps.std(ddof=1) / np.sqrt(reps)),
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--n", type=int, default=360)
    parser.add_argument("--k-eval", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"scoring bias, k_eval = {args.k_eval}, n = {args.n}, {args.reps} repetitions; "
        "estimate - truth in points, ± 1 standard error.\n  chosen: the exact accuracy of "
        "the candidates the protocol chose (the bias of its report draws)\n  oracle: the "
        "best candidate per sample (an attacker who knows every p exactly)"
    )
    print(f"  {'column':<12} {'chosen':>16} {'oracle':>16}")
    for key, gaps in measure(args.reps, args.n, args.k_eval).items():
        cells = [f"{gaps[t][0]:+.3f} ± {gaps[t][1]:.3f}" for t in ("chosen", "oracle")]
        print(f"  {key:<12} {cells[0]:>16} {cells[1]:>16}")


if __name__ == "__main__":
    main()
