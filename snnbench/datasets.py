"""What a data set is (``DatasetInfo``), the registry of them (``DATASETS``), and the folders and
cache file every loader shares: the data root, the decoded-image cache, an atomic cache write.

The loaders themselves live in ``snnbench.data`` (digits, CIFAR) and ``snnbench.events``
(dvs-cifar10); both file their data sets here, so neither imports the other's internals.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from safetensors.torch import save_file
from torch import Tensor

from snnbench.registry import Registry

Loader = Callable[[str, Path | None], tuple[Tensor, Tensor]]
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
HOW_TO_SET_ROOT = "or pass --data-root DIR (or set SNNBENCH_DATA_ROOT)"


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: its shape, classes, the normalisation its models use, and its loader
    ``(split, root) -> (images, labels)``. ``frames`` > 0: event data, ``[N, frames, C, H, W]``
    whose time axis is the model's (``snnbench.events``); ``input`` says what a sample is."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    summary: str
    loader: Loader
    frames: int = 0
    input: str = "images [C,H,W] in [0,1]; eps in pixel units"


def _check_plugin(name: str, obj: object) -> None:
    if not isinstance(obj, DatasetInfo):
        raise TypeError(f"{obj!r} is not a snnbench.data.DatasetInfo")
    if obj.name != name:
        raise ValueError(
            f"its DatasetInfo name {obj.name!r} differs from the entry point name "
            f"{name!r}; make them the same"
        )


DATASETS: Registry[DatasetInfo] = Registry(
    "dataset", plugins="snnbench.datasets", check=_check_plugin
)


def data_root(root: Path | None) -> Path:
    root = Path(os.environ.get("SNNBENCH_DATA_ROOT") or "data") if root is None else root
    return Path(root).expanduser().absolute()


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "snnbench"
    return Path(os.environ.get("SNNBENCH_CACHE") or default).expanduser().absolute()


def writable(directory: Path) -> bool:
    # os.access alone says yes to root even where the mode bits say read-only (shared/data is
    # r-x): honour the bits too, so a directory marked read-only is never written into.
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return os.access(directory, os.W_OK) and bool(mode & 0o222)


def write_cache(path: Path, images: Tensor, labels: Tensor, metadata: dict[str, str]) -> None:
    """Atomically (temporary file + rename): a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"images": images, "labels": labels}, str(temporary), metadata=metadata)
        os.replace(temporary, path)
    except OSError as error:
        warnings.warn(
            f"could not cache decoded images at {path} ({error}); set SNNBENCH_CACHE "
            f"to a writable folder",
            stacklevel=3,
        )
    finally:
        temporary.unlink(missing_ok=True)
