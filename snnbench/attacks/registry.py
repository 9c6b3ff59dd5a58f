"""The attack registry: an id maps to a factory ``(eps, norm, steps, eot) -> Attack``.

Ids that name a family rather than one attack (``transfer-model:NAME-pgd10``) are resolved by
the functions in ``PATTERNS``; ``attack_factory`` tries the registry first, then them.
"""

from __future__ import annotations

from typing import Callable

from snnbench.attacks.base import Attack
from snnbench.registry import Registry

AttackFactory = Callable[..., Attack]
ATTACKS: Registry[AttackFactory] = Registry("attack")
PATTERNS: list[Callable[[str], AttackFactory | None]] = []


def attack_factory(name: str) -> AttackFactory:
    """The factory of attack id ``name``; an unknown id names close matches."""
    if name in ATTACKS:
        return ATTACKS.get(name)
    for pattern in PATTERNS:
        factory = pattern(name)
        if factory is not None:
            return factory
    return ATTACKS.get(name)
