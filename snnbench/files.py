"""Atomic file writes and hashing: every file snnbench writes appears whole or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from snnbench.errors import SnnbenchError

NAME_MAX = 100
_NAME = re.compile(rf"[A-Za-z0-9_+-][A-Za-z0-9._+-]{{0,{NAME_MAX - 1}}}")


def check_name(name: Any, what: str = "name") -> str:
    """``name`` when it is one safe path component (a model, zoo entry, recipe or board name):
    letters, digits and ``. _ - +``, no leading dot, 1 to NAME_MAX characters. Everything
    snnbench writes under such a name then stays inside its folder (no ``..``, no ``/``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= NAME_MAX + 10 else repr(name)[:NAME_MAX] + "..."
        raise SnnbenchError(
            f"{what} {shown} is not a valid name: use 1 to {NAME_MAX} letters, "
            "digits and . _ - + (no leading dot, no / or spaces)"
        )
    return name


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``sha256("a|b|c")``: the same task gets the same seed everywhere."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
