"""Defences, registered by name (``snnbench list defenses``), and their composition ``a+b``."""

from __future__ import annotations

from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES

# Each file registers its defence on import.
from snnbench.defenses import (
    at,
    dlif,
    het,
    randhet,
    rat,
    sr,
    stog,
    tgo,
    vanilla,
)
from snnbench.defenses.compose import (
    Composite,
    create_defense,
    parse_defense,
    partner_defaults,
)

__all__ = [
    "DEFENSES",
    "Composite",
    "Defense",
    "LossContext",
    "create_defense",
    "parse_defense",
    "partner_defaults",
]
