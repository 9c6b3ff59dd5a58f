"""Accuracy with 95% intervals, MRA and the per-sample worst case (evaluation.md section 5).

Per-sample results are correct-draw counts out of ``k_eval`` (1 for deterministic models).
Binary rates get a Wilson interval; expected accuracy over several draws a bootstrap over
samples (draws of one sample are correlated, so never Wilson on n * k_eval).
"""
from __future__ import annotations

import base64
import math
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


def paired_difference(a: np.ndarray, b: np.ndarray, k_eval: int,
                      seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean of ``a - b`` per-sample accuracies with a paired bootstrap 95% interval.

    The Drop metric (RandHet Table 3): RA without EoT minus RA with EoT on the same samples;
    resampling the samples' differences keeps the pairing (the two runs share each sample).
    """
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) / k_eval
    if len(diff) == 0:
        return 0.0, (0.0, 0.0)
    return float(diff.mean()), bootstrap(diff, seed)


def mra(robust: Sequence[float]) -> float | None:
    """Minimum robust accuracy over a row's attack columns (RandHet's MRA: min, not mean)."""
    values = [v for v in robust if v is not None]
    return min(values) if values else None


def worst_case(per_attack: Sequence[np.ndarray], k_eval: int) -> np.ndarray:
    """Per-sample worst case over attacks: the minimum correct-draw rate of each sample."""
    return np.min(np.stack([np.asarray(a, dtype=np.float64) for a in per_attack]), axis=0) / k_eval


def encode_counts(counts: np.ndarray) -> str:
    return base64.b64encode(np.asarray(counts, dtype=np.uint8).tobytes()).decode("ascii")


def decode_counts(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()
