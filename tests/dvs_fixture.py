"""A synthetic CIFAR10-DVS copy: a few real AEDAT 2.0 files per class (issue 8).

Each recording is a few hundred DVS128 events in a blob whose place depends on the class, so a
model can tell the classes apart. Files follow jAER's AEDAT 2.0: ``#`` header lines ending in
``\\r\\n`` (tonic's header parser needs them), then big-endian uint32 (address, timestamp) pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnbench.data import CIFAR10_CLASSES

HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
)


def address(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The DVS128 address of events at (x, y, p) in snnbench's (SpikingJelly's) orientation:
    the inverse of ``snnbench.events.decode_dvs128``."""
    row, column, polarity = 127 - np.asarray(x), 127 - np.asarray(y), 1 - np.asarray(p)
    return ((row << 8) | (column << 1) | polarity).astype(np.uint32)


def write_aedat2(path: Path, addresses: np.ndarray, timestamps: np.ndarray) -> None:
    pairs = np.empty(2 * len(addresses), dtype=">u4")
    pairs[0::2], pairs[1::2] = addresses, timestamps
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER + pairs.tobytes())


def make_dvs_root(root: Path, per_class: int = 10, events: int = 300, seed: int = 0) -> Path:
    """``root/CIFAR10DVS/<class>/<n>.aedat`` for every class; returns ``root``."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CIFAR10_CLASSES):
        cx, cy = 16 + 24 * (label % 5), 32 + 64 * (label // 5)
        for index in range(per_class):
            x = np.clip(cx + rng.integers(-8, 9, events), 0, 127)
            y = np.clip(cy + rng.integers(-8, 9, events), 0, 127)
            p = (rng.random(events) < (0.8 if label % 2 else 0.2)).astype(np.int64)
            t = np.sort(rng.integers(0, 100_000, events)).astype(np.uint32)
            write_aedat2(
                root / "CIFAR10DVS" / name / f"{name}_{index:04d}.aedat", address(x, y, p), t
            )
    return root
