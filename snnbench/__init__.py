"""snnbench: a benchmark of the adversarial robustness of spiking neural networks.

import snnbench
model = snnbench.create_model("vanilla", arch="tiny", dataset="digits", timesteps=4)
model = snnbench.load("path/or/name")        # [0,1] images [B,C,H,W] -> logits [B,K]
x, y = snnbench.load_dataset("digits", "test")
"""

from __future__ import annotations

from snnbench.api import attack, evaluate, gate, list_models, report, run, train
from snnbench.archs import ARCHS
from snnbench.attacks import ATTACKS, create_attack
from snnbench.config import ModelConfig, TrainConfig, parse_eps
from snnbench.data import DATASETS, load_dataset
from snnbench.defenses import DEFENSES
from snnbench.errors import SnnbenchError
from snnbench.model import create_model
from snnbench.neurons import grad_mode
from snnbench.zoo import load_model as load, load_model_card as load_card

__version__ = "0.1.0"


def list_archs() -> list[str]:
    return ARCHS.names()


def list_defenses() -> list[str]:
    return DEFENSES.names()


def list_attacks() -> list[str]:
    return ATTACKS.names()


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = [
    "ModelConfig",
    "SnnbenchError",
    "TrainConfig",
    "attack",
    "create_attack",
    "create_model",
    "evaluate",
    "gate",
    "grad_mode",
    "list_archs",
    "list_attacks",
    "list_datasets",
    "list_defenses",
    "list_models",
    "load",
    "load_card",
    "load_dataset",
    "parse_eps",
    "report",
    "run",
    "train",
]
