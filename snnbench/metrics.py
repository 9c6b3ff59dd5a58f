"""Accuracy with 95% intervals, MRA and the per-sample worst case (docs/protocol.md, "Statistics").

Per-sample results are correct-draw counts out of ``k_eval`` (1 for deterministic models).
Binary rates get a Wilson interval; expected accuracy over several draws a bootstrap over
samples (draws of one sample are correlated, so never Wilson on n * k_eval).

Stochastic models: every choice among a sample's candidate inputs (the clean one and each
attack's output) compares *selection* counts, and the chosen candidate's result is its own
*report* counts, drawn afresh. A report draw never takes part in a choice, so the reported
accuracy of the chosen candidate carries no winner's curse.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP = 2000


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate (95% by default); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(values: np.ndarray, seed: int = 0, rounds: int = BOOTSTRAP) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of per-sample ``values``."""
    if len(values) == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(rounds, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def accuracy_interval(counts: np.ndarray, k_eval: int) -> tuple[float, tuple[float, float], str]:
    """(mean accuracy, 95% interval, method) of per-sample correct-draw counts."""
    counts = np.asarray(counts, dtype=np.float64)
    if k_eval == 1:
        hits = int(counts.sum())
        return hits / max(1, len(counts)), wilson(hits, len(counts)), "wilson"
    rates = counts / k_eval
    return float(rates.mean()) if len(rates) else 0.0, bootstrap(rates), "bootstrap"


def paired_difference(
    a: np.ndarray, b: np.ndarray, k_eval: int, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Mean of ``a - b`` per-sample accuracies with a paired bootstrap 95% interval.

    The Drop metric (RandHet Table 3): RA without EoT minus RA with EoT on the same samples;
    resampling the samples' differences keeps the pairing (the two runs share each sample).
    """
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) / k_eval
    if len(diff) == 0:
        return 0.0, (0.0, 0.0)
    return float(diff.mean()), bootstrap(diff, seed)


@dataclass(frozen=True)
class Candidates:
    """Each sample's chosen candidate input: its selection counts, its report counts, and its
    origin (0: the clean input; m > 0: an attack's output, m naming the attack)."""

    select: np.ndarray
    report: np.ndarray
    origin: np.ndarray

    @property
    def adversarial(self) -> np.ndarray:
        return self.origin > 0

    def challenged_by(self, other: "Candidates") -> np.ndarray:
        """Where ``other`` takes over: fewer correct selection draws, or as few and adversarial
        where the current one is the clean input (ties go to the adversarial candidate)."""
        tie = (other.select == self.select) & other.adversarial & ~self.adversarial
        return (other.select < self.select) | tie

    def merge(self, other: "Candidates") -> "Candidates":
        take = self.challenged_by(other)
        return Candidates(
            np.where(take, other.select, self.select),
            np.where(take, other.report, self.report),
            np.where(take, other.origin, self.origin),
        )


def worst_candidates(runs: Sequence[Candidates]) -> Candidates:
    """Per-sample worst case over runs on the same samples: the candidate with the fewest
    correct selection draws (earlier runs win ties between adversarial candidates)."""
    if not runs:
        raise ValueError("worst_candidates needs at least one run")
    best = runs[0]
    for run in runs[1:]:
        best = best.merge(run)
    return best


def mra(robust: Sequence[float]) -> float | None:
    """Minimum robust accuracy over a row's attack columns (RandHet's MRA: min, not mean)."""
    values = [v for v in robust if v is not None]
    return min(values) if values else None


def mra_interval(
    per_attack: Sequence[np.ndarray], k_eval: int, seed: int = 0, rounds: int = BOOTSTRAP
) -> tuple[float, tuple[float, float]]:
    """MRA (minimum over the columns of their mean accuracy) with a percentile bootstrap 95%
    interval: samples are resampled together, so each round's minimum keeps the columns'
    pairing. The columns must hold the same samples in the same order."""
    rates = np.stack([np.asarray(a, dtype=np.float64) for a in per_attack]) / k_eval
    if rates.shape[1] == 0:
        return 0.0, (0.0, 1.0)
    pick = np.random.default_rng(seed).integers(0, rates.shape[1], size=(rounds, rates.shape[1]))
    rounds_min = rates[:, pick].mean(axis=2).min(axis=0)
    return float(rates.mean(axis=1).min()), (
        float(np.quantile(rounds_min, 0.025)),
        float(np.quantile(rounds_min, 0.975)),
    )


SYMMETRY = 0.1  # halves within 10% of each other read as one ± (the larger half)


def format_interval(acc: float, ci: Sequence[float] | None, digits: int = 2) -> str:
    """``value ± half-width`` in percent where the interval is close to symmetric (its halves
    within 10% of each other; the larger half is shown), else ``value [low, high]``."""
    if ci is None:
        return f"{100 * acc:.{digits}f}"
    below, above = 100 * (acc - ci[0]), 100 * (ci[1] - acc)
    if abs(below - above) <= SYMMETRY * max(below, above):
        return f"{100 * acc:.{digits}f} ± {max(below, above):.{digits}f}"
    return f"{100 * acc:.{digits}f} [{100 * ci[0]:.{digits}f}, {100 * ci[1]:.{digits}f}]"


def encode_counts(counts: np.ndarray) -> str:
    return base64.b64encode(np.asarray(counts, dtype=np.uint8).tobytes()).decode("ascii")


def decode_counts(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()
