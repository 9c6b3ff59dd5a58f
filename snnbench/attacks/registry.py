"""The attack registry: an id maps to a factory ``(eps, norm, steps, eot) -> Attack``.

Ids that name a family rather than one attack (``transfer-model:NAME-pgd10``) are resolved by
the functions in ``PATTERNS``; ``attack_factory`` tries the registry first, then them.
"""

from __future__ import annotations

from typing import Callable

from snnbench.attacks.base import Attack
from snnbench.registry import Registry

AttackFactory = Callable[..., Attack]


def _check_plugin(name: str, obj: object) -> None:
    if not callable(obj):
        raise TypeError(f"{obj!r} is not an attack factory (eps, norm, steps, eot) -> Attack")


ATTACKS: Registry[AttackFactory] = Registry(
    "attack", plugins="snnbench.attacks", check=_check_plugin
)
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
