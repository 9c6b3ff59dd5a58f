"""The defence registry (names lower case; see docs/guide.md)."""

from __future__ import annotations

from snnbench.defenses.base import Defense
from snnbench.registry import Registry


def _check_plugin(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Defense)):
        raise TypeError(f"{obj!r} is not a subclass of snnbench.defenses.Defense")
    if obj.name != name:
        raise ValueError(
            f"its class attribute name = {obj.name!r} differs from the entry point "
            f"name {name!r}; make them the same"
        )


DEFENSES: Registry[type[Defense]] = Registry(
    "defence", plural="defenses", plugins="snnbench.defenses", check=_check_plugin
)
