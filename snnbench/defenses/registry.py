"""The defence registry (names lower case; see docs/guide.md)."""

from __future__ import annotations

from snnbench.defenses.base import Defense
from snnbench.registry import Registry

DEFENSES: Registry[type[Defense]] = Registry("defence", plural="defenses")
