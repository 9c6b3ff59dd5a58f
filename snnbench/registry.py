"""One small registry class behind every name lookup (archs, neurons, datasets, attacks, ...).

In the spirit of timm's ``register_model``: a decorator files a factory under a name with a
one-line summary and its source; listing builds nothing; an unknown name raises an error that
suggests close matches. A registry with a ``plugins`` group also files the entry points of
that group (``snnbench.plugins``), once, before its first lookup or listing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from snnbench.errors import SnnbenchError
from snnbench.plugins import Check, declare, load_plugins

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str = ""
    paper: str = ""
    aliases: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named factories of one kind; ``kind`` is the word used in messages ("defence", "arch")."""

    def __init__(
        self,
        kind: str,
        plural: str | None = None,
        *,
        plugins: str | None = None,
        check: Check | None = None,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._plugins = plugins is not None
        if plugins is not None:  # ``check``: what a plugin's object must be
            declare(plugins, self, check)

    def _load_plugins(self) -> None:
        if self._plugins:
            load_plugins()

    def register(
        self,
        name: str,
        *,
        summary: str = "",
        paper: str = "",
        aliases: tuple[str, ...] = (),
        **extra: Any,
    ) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, summary=summary, paper=paper, aliases=aliases, **extra)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        summary: str = "",
        paper: str = "",
        aliases: tuple[str, ...] = (),
        **extra: Any,
    ) -> None:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[name] = Entry(name, obj, summary, paper, tuple(aliases), dict(extra))
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or an alias; an unknown name is a SnnbenchError."""
        self._load_plugins()
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        choices = list(self._entries) + list(self._aliases)
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise SnnbenchError(
            f"unknown {self.kind} {name!r}; {hint}see `snnbench list {self.plural}`"
        )

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return isinstance(name, str) and (
            name.lower() in self._entries or name.lower() in self._aliases
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
