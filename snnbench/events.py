"""``dvs-cifar10``: CIFAR10-DVS event streams as frames ``[N, T, 2, H, W]`` in [0, 1].

Source: Li et al., "CIFAR10-DVS: An Event-Stream Dataset for Object Classification", Frontiers in
Neuroscience 11:309, 2017; 10,000 recordings (1,000 per class) of a DVS128 sensor (128x128, two
polarities). Read with ``tonic`` (optional: ``pip install '.[dvs]'`` in a clone) from a local copy,
never downloaded:

    <root>/CIFAR10DVS/<class>/<files>     one folder per CIFAR-10 class name

with the original AEDAT 2.0 ``.aedat`` files (jAER: ``#`` header lines, then big-endian uint32
address, timestamp pairs) or tonic's ``.aedat4`` conversion (read with ``tonic.io.read_aedat4``,
which needs the ``aedat`` package).

AEDAT 2.0 address (DVS128): polarity bit 0, column field bits 1-7, row field bits 8-14. Events are
oriented as SpikingJelly's ``CIFAR10DVS.load_origin_data`` does (x = 127 - row field, y = 127 -
column field, p = 1 - polarity bit), so frames match the SpikingJelly/PKU pipelines that TGO's
code base builds on. ``.aedat4`` events are taken as tonic stores them (x, y, on).

Frames (docs/defenses.md, section 8; our choices where TGO is silent, RECONSTRUCTED):
``tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=T)``: T slices with equal event
counts (SpikingJelly's ``split_by='number'``), counts per polarity and pixel; T = 10; resized
128 -> 48 by area interpolation (``F.interpolate(mode="area")``); divided by the sample's largest
value (per-sample max normalisation, ``data.frame_norm = max``: our choice, the paper is silent),
then quantised to multiples of 1/255 so the uint8 cache returns exactly the frames first computed.
Split (our choice; the paper is silent, common practice): per class, the first 90% of the files in
sorted order train, the rest test. Frames of each split are cached once to
``<root>/cifar10dvs.T10.s48.<split>.safetensors`` (else under ``$SNNBENCH_CACHE`` when the root is
read-only), keyed by the file listing (names and sizes), so a changed copy is framed again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor

from snnbench.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    HOW_TO_SET_ROOT,
    DatasetInfo,
    cache_dir,
    data_root,
    writable,
    write_cache,
)
from snnbench.errors import SnnbenchError

FOLDER = "CIFAR10DVS"
SENSOR = 128  # DVS128: 128 x 128 pixels, 2 polarities
FRAMES = 10  # T (docs/defenses.md: 10 frames, 48 x 48, our choice)
FRAME_SIZE = 48
TRAIN_FRACTION = 0.9
SUFFIXES = (".aedat", ".aedat4")
EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
INPUT = (
    "event frames [T,2,H,W], per-sample max-normalised counts in [0,1]; eps in frame-value units"
)
CACHE_VERSION = "1"
NEEDS_TONIC = (
    "reading dvs-cifar10 needs tonic: pip install 'tonic>=1.4' (in a clone: pip install '.[dvs]')"
)


def _tonic() -> Any:
    try:
        import tonic
    except ImportError as error:
        raise SnnbenchError(NEEDS_TONIC) from error
    return tonic


def decode_dvs128(address: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, p) of DVS128 AEDAT 2.0 addresses, oriented as SpikingJelly's CIFAR10DVS reader."""
    address = np.asarray(address, dtype=np.uint32)
    column = (address >> 1) & 0x7F
    row = (address >> 8) & 0x7F
    polarity = address & 1
    return (
        (127 - row).astype(np.int16),
        (127 - column).astype(np.int16),
        (1 - polarity).astype(np.int8),
    )


def read_events(path: Path) -> np.ndarray:
    """The events of one recording as a structured array (x, y, t, p)."""
    tonic = _tonic()
    try:
        if path.suffix == ".aedat4":
            try:
                import aedat  # noqa: F401  (tonic.io.read_aedat4 imports it)
            except ImportError as error:
                raise SnnbenchError(
                    f"{path} is an AEDAT 4 file: reading it needs the aedat "
                    f"package: pip install aedat"
                ) from error
            raw = tonic.io.read_aedat4(str(path))
            names = raw.dtype.names
            events = np.empty(len(raw), EVENT_DTYPE)
            events["t"], events["x"], events["y"] = raw[names[0]], raw[names[1]], raw[names[2]]
            events["p"] = raw[names[3]].astype(np.int8)
        else:
            version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
            raw = tonic.io.get_aer_events_from_file(str(path), version, start)
            events = np.empty(len(raw), EVENT_DTYPE)
            events["x"], events["y"], events["p"] = decode_dvs128(raw["address"])
            events["t"] = raw["timeStamp"]
    except SnnbenchError:
        raise
    except Exception as error:  # tonic reports a broken file with asserts and numpy errors
        raise SnnbenchError(
            f"cannot read events from {path} ({type(error).__name__}: {error}); "
            f"the file is damaged or not AEDAT: copy it again"
        ) from error
    if len(events) < FRAMES:
        raise SnnbenchError(
            f"{path} holds {len(events)} events, fewer than the {FRAMES} frames "
            f"a sample needs; copy the file again or remove it"
        )
    return events


def to_frames(events: np.ndarray, frames: int = FRAMES, size: int = FRAME_SIZE) -> Tensor:
    """uint8 ``[T, 2, size, size]``: equal-count slices, area-resized, over the sample's max."""
    tonic = _tonic()
    counts = tonic.transforms.ToFrame(sensor_size=(SENSOR, SENSOR, 2), n_event_bins=frames)(events)
    x = torch.from_numpy(np.asarray(counts, dtype=np.float32))
    if size != SENSOR:
        x = F.interpolate(x, size=(size, size), mode="area")
    peak = float(x.max())
    x = x / peak if peak > 0 else x
    return torch.round(x * 255).to(torch.uint8)


def list_files(folder: Path, split: str) -> tuple[list[Path], list[int]]:
    """Files and labels of ``split``: per class, the first 90% (sorted) train, the rest test."""
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    missing = [name for name in CIFAR10_CLASSES if name not in found]
    if missing:
        raise SnnbenchError(
            f"{folder} lacks the class folders {' '.join(missing)}; expected "
            f"{folder}/<class>/ for {' '.join(CIFAR10_CLASSES)} holding .aedat "
            f"or .aedat4 files"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CIFAR10_CLASSES):
        names = sorted(p for p in (folder / name).iterdir() if p.suffix in SUFFIXES)
        if not names:
            raise SnnbenchError(
                f"{folder / name} holds no .aedat or .aedat4 files; copy the "
                f"CIFAR10-DVS recordings of class {name!r} there"
            )
        cut = int(len(names) * TRAIN_FRACTION)
        cut = min(max(cut, 1), len(names) - 1) if len(names) > 1 else len(names)
        chosen = names[:cut] if split == "train" else names[cut:]
        files += chosen
        labels += [label] * len(chosen)
    return files, labels


def _cache_path(root: Path, split: str) -> Path:
    name = f"cifar10dvs.T{FRAMES}.s{FRAME_SIZE}.{split}.safetensors"
    if writable(root):
        return root / name
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / f"{key}-{name}"


def load_dvs_cifar10(split: str, root: Path | None) -> tuple[Tensor, Tensor]:
    """Frames float32 ``[N, T, 2, 48, 48]`` in [0, 1] and labels int64 ``[N]`` of one split."""
    root = data_root(root)
    folder = root / FOLDER
    if not folder.is_dir():
        raise SnnbenchError(
            f"dvs-cifar10 not found: looked for {folder}/; place the CIFAR10-DVS "
            f"recordings as {folder}/<class>/<files> (.aedat or .aedat4, class "
            f"folders airplane ... truck; see docs/reproducing.md), "
            f"{HOW_TO_SET_ROOT}"
        )
    files, labels = list_files(folder, split)
    listing = "\n".join(f"{p.parent.name}/{p.name}:{p.stat().st_size}" for p in files)
    metadata = {
        "version": CACHE_VERSION,
        "files": str(len(files)),
        "frames": str(FRAMES),
        "size": str(FRAME_SIZE),
        "split": split,
        "norm": "max",
        "slicing": "n_event_bins",
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }
    cache = _cache_path(root, split)
    try:
        with safe_open(str(cache), framework="pt") as file:
            if file.metadata() == metadata:  # else the copy changed since: frame it again
                return file.get_tensor("images").float().div_(255), file.get_tensor("labels")
    except (OSError, SafetensorError, KeyError):  # none yet, or broken: (re)build it
        pass
    frames = torch.stack([to_frames(read_events(path)) for path in files])
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    write_cache(cache, frames, label_tensor, metadata)
    return frames.float().div_(255), label_tensor


_SUMMARY = (
    f"CIFAR10-DVS events as {FRAMES} frames of 2x{FRAME_SIZE}x{FRAME_SIZE}, 9:1 split per "
    f"class (needs tonic; frames cached)"
)
DATASETS.add(
    "dvs-cifar10",
    DatasetInfo(
        "dvs-cifar10",
        10,
        2,
        FRAME_SIZE,
        (0.0, 0.0),
        (1.0, 1.0),
        _SUMMARY,
        load_dvs_cifar10,
        frames=FRAMES,
        input=INPUT,
    ),
    summary=_SUMMARY,
    paper="Li et al. 2017, CIFAR10-DVS, Front. Neurosci. 11:309",
)
