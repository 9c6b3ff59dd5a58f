"""Defences, registered by name, and the parser of defence expressions such as ``tgo+rat``."""
from __future__ import annotations

from snnbench.defenses import vanilla as _vanilla  # noqa: F401  (registers)
from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES
from snnbench.errors import SnnbenchError


def parse_defense(expr: str) -> list[str]:
    """Canonical member names of ``expr`` (``"TGO+rat"`` -> ``["tgo", "rat"]``)."""
    parts = [p.strip() for p in expr.split("+")]
    if not expr.strip() or any(not p for p in parts):
        raise SnnbenchError(f"cannot read defence {expr!r}; write a name such as 'vanilla' or "
                            "a combination such as 'tgo+rat'; see `snnbench list defenses`")
    names = [DEFENSES.canonical(p) for p in parts]
    if len(set(names)) != len(names):
        raise SnnbenchError(f"defence {expr!r} names a member twice")
    if len(names) > 1 and "vanilla" in names:
        raise SnnbenchError(f"'vanilla' means no defence and combines with nothing; drop it from {expr!r}")
    if len(names) > 1:
        raise SnnbenchError(f"combinations such as {expr!r} need more than one registered "
                            "defence; this build registers only 'vanilla'")
    return names


def create_defense(expr: str, settings: dict | None = None) -> Defense:
    (name,) = parse_defense(expr)
    return DEFENSES.get(name)(settings)


__all__ = ["DEFENSES", "Defense", "create_defense", "parse_defense"]
