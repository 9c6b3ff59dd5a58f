"""Attacks, registered by id; ``create_attack`` binds one to its budget."""
from __future__ import annotations

from snnbench.attacks import autoattack as _autoattack  # noqa: F401  (registers)
from snnbench.attacks import mtpgd as _mtpgd  # noqa: F401  (registers)
from snnbench.attacks import noise as _noise  # noqa: F401  (registers)
from snnbench.attacks import torchattacks as _torchattacks  # noqa: F401  (registers)
from snnbench.attacks.base import Attack, check_valid, parse_norm
from snnbench.attacks.eot import LogitMeanEoT, eot_gradient
from snnbench.attacks.registry import ATTACKS


def create_attack(name: str, eps: float, norm: str = "Linf", steps: int | None = None,
                  eot: int = 1) -> Attack:
    """``create_attack("pgd10", eps=8/255)``; an unknown id lists close matches.

    ``eot`` > 1 averages the gradient over that many stochastic passes per step.
    """
    return ATTACKS.get(name)(eps=eps, norm=norm, steps=steps, eot=eot)


def list_attacks() -> list[str]:
    return ATTACKS.names()


__all__ = ["ATTACKS", "Attack", "LogitMeanEoT", "check_valid", "create_attack", "eot_gradient",
           "list_attacks", "parse_norm"]
