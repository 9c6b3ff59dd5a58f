"""``vanilla``: the track's LIF neuron trained with BPTT on clean inputs (docs/defenses.md).

Cross-entropy on the time-averaged logits, SGD with the track's weight decay (5e-4 on the tgo
and pku tracks, 1e-4 on the randhet track). Identical to the bare architecture.
Reference (TGO Table 4, CIFAR-100, VGG-11): clean 71.4, FGSM 5.9, RFGSM 25.0, PGD40 0.0.
"""

from __future__ import annotations

from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES


@DEFENSES.register(
    "vanilla",
    summary="BPTT on clean inputs with the track's LIF (no defence)",
    paper="Deng et al. 2022, TET (TGO's baseline)",
)
class Vanilla(Defense):
    name = "vanilla"
