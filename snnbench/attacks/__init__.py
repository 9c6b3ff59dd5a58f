"""Attacks, registered by id; ``create_attack`` binds one to its budget."""

from __future__ import annotations

import dataclasses

from snnbench.attacks import autoattack as _autoattack  # noqa: F401  (registers)
from snnbench.attacks import mtpgd as _mtpgd  # noqa: F401  (registers)
from snnbench.attacks import noise as _noise  # noqa: F401  (registers)
from snnbench.attacks import torchattacks as _torchattacks  # noqa: F401  (registers)
from snnbench.attacks import transfer as _transfer  # noqa: F401  (registers; after the others)
from snnbench.attacks.base import Attack, check_valid, parse_norm
from snnbench.attacks.eot import LogitMeanEoT, eot_gradient
from snnbench.attacks.registry import ATTACKS, attack_factory
from snnbench.neurons import parse_grad_mode


def create_attack(
    name: str,
    eps: float,
    norm: str = "Linf",
    steps: int | None = None,
    eot: int = 1,
    surrogate: str = "own",
) -> Attack:
    """``create_attack("pgd10", eps=8/255)``; an unknown id lists close matches.

    ``eot`` > 1 averages the gradient over that many stochastic passes per step; ``surrogate``
    picks the attacker's spike backward (``own``, or ``SHAPE:WIDTH`` such as ``atan:2``).
    """
    attack = attack_factory(name)(eps=eps, norm=norm, steps=steps, eot=eot)
    token, _ = parse_grad_mode(surrogate)
    return dataclasses.replace(attack, grad=token) if token != attack.grad else attack


def list_attacks() -> list[str]:
    return ATTACKS.names()


__all__ = [
    "ATTACKS",
    "Attack",
    "LogitMeanEoT",
    "check_valid",
    "create_attack",
    "eot_gradient",
    "list_attacks",
    "parse_norm",
]
