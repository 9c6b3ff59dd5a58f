"""The attack base: settings, a canonical key, and the validity check every output passes.

An attack never knows which defence it faces and never changes the model's mode: models keep
their randomness on a flag, not on ``model.training`` (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from snnbench.config import format_eps
from snnbench.errors import SnnbenchError
from snnbench.neurons import grad_mode

NORMS = {"linf": "Linf", "l2": "L2"}


def parse_norm(norm: str) -> str:
    key = str(norm).strip().lower()
    if key not in NORMS:
        raise SnnbenchError(f"unknown norm {norm!r}; choose Linf or L2")
    return NORMS[key]


@dataclass(frozen=True)
class Attack:
    """An attack id bound to its budget and parameters. Subclasses implement ``perturb``."""

    id: str
    eps: float
    norm: str = "Linf"
    params: dict[str, Any] = field(default_factory=dict)
    impl: str = ""
    grad: str = "bptt"
    eot: int = 1  # gradient draws averaged per step (EoT); 1 = none
    # The suite member this attack was built from (``apgd-ce@eot=2k``): a name for tables,
    # not a setting, so it stays out of the key.
    label: str = field(default="", compare=False)

    def key(self) -> str:
        """Canonical identity of the attack and all its settings (part of every result's key)."""
        params = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return (
            f"{self.id}|{self.norm.lower()}|eps={format_eps(self.eps)}|{params}"
            f"|grad={self.grad}|eot={self.eot}"
        )

    def grad_evals(self) -> int:
        """Forward+backward passes per attacked sample."""
        return int(self.params.get("steps", 1)) * self.eot

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``, checked to lie in the eps-ball and in [0, 1]."""
        was_training = model.training
        grad_mode(model, self.grad)
        try:
            x_adv = self.perturb(model, x, y).detach()
        finally:
            grad_mode(model, "own")
            if model.training != was_training:
                model.train(was_training)
        check_valid(x_adv, x, self.eps, self.norm, self.id)
        return x_adv


def check_valid(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, name: str) -> None:
    """Check C01: outside the ball (+1e-6), outside [0, 1] or not finite voids the run."""
    if not bool(torch.isfinite(x_adv).all()):
        raise SnnbenchError(
            f"attack {name} returned NaN or infinite inputs; this is a bug in the attack"
        )
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    if len(size) and float(size.max()) > eps + 1e-6:
        raise SnnbenchError(
            f"attack {name} returned a perturbation of size {float(size.max()):.6g} "
            f"> eps {eps:.6g} ({norm}); this is a bug in the attack, not the model"
        )
    if len(x_adv) and (float(x_adv.min()) < -1e-6 or float(x_adv.max()) > 1 + 1e-6):
        raise SnnbenchError(
            f"attack {name} returned inputs outside [0, 1]; this is a bug in the attack"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
