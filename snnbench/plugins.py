"""Defences, archs, attacks and data sets from other packages, found through entry points.

A package declares them in its ``pyproject.toml`` (docs/guide.md, "Your own defence")::

    [project.entry-points."snnbench.defenses"]
    noisy-loss = "my_package.defense:NoisyLoss"

The entry point's name is the registered name; its object is what a built-in registration files:
a ``Defense`` subclass (``snnbench.defenses``), an arch builder (``snnbench.archs``), an attack
factory (``snnbench.attacks``) or a ``DatasetInfo`` (``snnbench.datasets``). Each registry reads
its group once: the first lookup or listing of any of them loads all four groups (so a plugin
that looks up a built-in data set while it is imported finds it). A plugin that fails to import or to
register is one warning naming the plugin, its package and the error; the rest still work.
"""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from snnbench.registry import Registry

GROUPS = ("snnbench.defenses", "snnbench.archs", "snnbench.attacks", "snnbench.datasets")
Check = Callable[[str, Any], None]  # raises TypeError/ValueError when the object cannot serve


_GROUPS: dict[str, tuple[Registry[Any], Check | None]] = {}
_loaded = False


class PluginWarning(UserWarning):
    """A plugin that could not be loaded (the message says which and how to fix it)."""


def snnbench_imported() -> bool:
    """False while the snnbench package itself is being imported: built-in modules look their
    registries up as they register (``attacks.transfer``), and a plugin, which imports snnbench,
    must wait until snnbench is whole."""
    module = sys.modules.get("snnbench")
    return module is not None and not getattr(module.__spec__, "_initializing", False)


def package_of(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return dist.name if dist is not None else "an unknown package"


def describe(obj: Any) -> tuple[str, str]:
    """(summary, paper) of a plugin object: its ``summary``/``paper`` attributes, else the first
    line of its docstring."""
    summary = getattr(obj, "summary", None)
    if not isinstance(summary, str) or not summary:
        summary = ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
    paper = getattr(obj, "paper", "")
    return summary, paper if isinstance(paper, str) else ""


def declare(group: str, registry: Registry[Any], check: Check | None) -> None:
    """``registry`` files the entry points of ``group`` (a registry with ``plugins=``)."""
    _GROUPS[group] = (registry, check)


def load_plugins() -> None:
    """File every declared group's entry points, once, after snnbench itself is imported."""
    global _loaded
    if _loaded or not snnbench_imported():
        return
    _loaded = True  # before loading: a plugin that looks a registry up sees the built-ins
    for group, (registry, check) in _GROUPS.items():
        load_group(registry, group, check)


def load_group(registry: Registry[Any], group: str, check: Check | None = None) -> None:
    """File every entry point of ``group`` in ``registry``; a broken one is a warning."""
    for point in entry_points(group=group):
        package = package_of(point)
        try:
            if point.name != point.name.lower():
                raise ValueError("snnbench names are lower case; rename the entry point")
            obj = point.load()
            if check is not None:
                check(point.name, obj)
            summary, paper = describe(obj)
            registry.add(point.name, obj, summary=summary, paper=paper, package=package)
        except Exception as exc:  # a plugin's bug is its package's, never a crash of ours
            warnings.warn(
                f"plugin {registry.kind} {point.name!r} ({point.value}) from package "
                f"{package!r} was not loaded: {type(exc).__name__}: {exc}; fix or "
                f"upgrade that package, or `pip uninstall {package}`",
                PluginWarning,
                stacklevel=3,
            )
