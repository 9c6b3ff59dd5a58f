"""The attack registry: an id maps to a factory ``(eps, norm, steps) -> Attack``."""
from __future__ import annotations

from typing import Callable

from snnbench.attacks.base import Attack
from snnbench.registry import Registry

AttackFactory = Callable[..., Attack]
ATTACKS: Registry[AttackFactory] = Registry("attack")
