"""Learning-rate schedules shared by the training loop and the defences' own optimisers."""

from __future__ import annotations

import math


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay per epoch from ``base`` (epoch 0) towards 0 (epoch ``epochs``)."""
    return 0.5 * base * (1 + math.cos(math.pi * epoch / epochs))
