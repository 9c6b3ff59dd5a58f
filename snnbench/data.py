"""Data sets as [0,1] float images ``[N, C, H, W]`` and int64 labels, class-balanced subsets, and
the crop + flip used to train on 32-pixel images.

Sources: ``digits``: scikit-learn's ``load_digits`` (UCI handwritten digits: 1,797 images, 8x8, 16
grey levels), pixels / 16, a seeded class-stratified 1,437/360 split (ours; shared/data/README.md).
``cifar10``, ``cifar100``: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
2009, from torchvision's ``cifar-10-batches-py/`` or ``cifar-100-python/`` (fine labels); CIFAR-10
also from the JPEG copy ``cifar10-jpeg/`` or its archive (shared/data/README.md: re-encoding
shifts pixels slightly, so results on it are close to, not identical with, the original's).
Normalisation: docs/defenses.md (the reference repos' constants); subsets: docs/protocol.md
section 1 ("first n/#classes files per class"); crop + flip: the usual CIFAR recipe (pad 4).
``dvs-cifar10`` (event frames ``[N, T, 2, H, W]``) lives in ``snnbench.events``.

Nothing here runs code from a file: the python batches are pickles, read with an unpickler that
can only rebuild numpy arrays (torchvision's CIFAR classes use plain ``pickle.load``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor

from snnbench import events  # noqa: F401  (registers dvs-cifar10)
from snnbench import progress
from snnbench.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    HOW_TO_SET_ROOT,
    DatasetInfo,  # noqa: F401
    cache_dir as _cache_dir,
    data_root as _data_root,
    writable as _writable,
    write_cache as _write_cache,
)
from snnbench.errors import SnnbenchError

SPLITS = ("train", "test")


def input_card(info: DatasetInfo) -> dict[str, Any]:
    """What a model card records about its input (shape of one sample, range, eps units)."""
    sample = [info.channels, info.image_size, info.image_size]
    return {
        "format": "event frames" if info.frames else "image",
        "range": [0, 1],
        "shape": [info.frames, *sample] if info.frames else sample,
        "description": info.input,
    }


def dataset_info(name: str) -> DatasetInfo:
    """The registered ``DatasetInfo`` for ``name``; an unknown name suggests close matches."""
    return DATASETS.get(name)


def load_dataset(name: str, split: str, root: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """Images float32 ``[N, C, H, W]`` (event data: ``[N, T, C, H, W]``) in [0, 1] and labels
    int64 ``[N]`` of one split.

    ``root`` (files-based data sets only) defaults to ``$SNNBENCH_DATA_ROOT``, else ``./data``.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise SnnbenchError(f"unknown split {split!r} for {info.name}; use 'train' or 'test'")
    progress.status(f"loading {info.name} {split}")
    return info.loader(split, None if root is None else Path(root))


def balanced_subset(labels: Tensor, n: int, num_classes: int) -> Tensor:
    """Indices (ascending) of the first ``n // num_classes`` samples of each class in data set
    order, one more for the lowest ``n % num_classes`` classes (docs/protocol.md). ``n`` at
    least the split's size gives every index; a class short of its share gives all it has."""
    if n < 1 or num_classes < 1:
        raise SnnbenchError(
            f"a subset needs n >= 1 samples and num_classes >= 1, got n={n}, "
            f"num_classes={num_classes}; pass positive numbers"
        )
    labels = torch.as_tensor(labels).detach().cpu().long().reshape(-1)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SnnbenchError(
            f"labels must lie in [0, {num_classes}), found {int(labels.min())}"
            f"..{int(labels.max())}; pass the data set's number of classes"
        )
    if n >= labels.numel():
        return torch.arange(labels.numel())
    quota = torch.full((num_classes,), n // num_classes, dtype=torch.long)
    quota[: n % num_classes] += 1
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)  # position of each sample among its class, in data set order
    rank[order] = torch.arange(order.numel()) - starts[labels[order]]
    return torch.nonzero(rank < quota[labels]).reshape(-1)


def augment_batch(
    x: Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> Tensor:
    """Random crop of the zero-padded images back to their size, then (``flip``) a horizontal flip
    with probability 1/2, drawn per sample from ``generator``: one gather, no loop over samples."""
    if x.dim() != 4 or padding < 0:
        raise SnnbenchError(
            f"augment_batch takes images [B, C, H, W] and padding >= 0, got shape "
            f"{tuple(x.shape)} and padding {padding}; pass a 4-d batch"
        )
    batch, _, height, width = x.shape
    span, device = 2 * padding + 1, generator.device
    shift_y = torch.randint(0, span, (batch,), generator=generator, device=device).to(x.device)
    shift_x = torch.randint(0, span, (batch,), generator=generator, device=device).to(x.device)
    flips = (torch.rand(batch, generator=generator, device=device) < 0.5).to(x.device) & flip
    rows = shift_y[:, None] + torch.arange(height, device=x.device)
    columns = torch.arange(width, device=x.device)
    columns = shift_x[:, None] + torch.where(flips[:, None], columns.flip(0), columns)
    padded = F.pad(x, (padding, padding, padding, padding)).permute(0, 2, 3, 1)
    index = torch.arange(batch, device=x.device)[:, None, None]
    return padded[index, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2).contiguous()


def _load_digits(split: str, root: Path | None) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = np.asarray(digits.target, dtype=np.int64)
    train, test = train_test_split(
        np.arange(labels.size), test_size=360, stratify=labels, random_state=0
    )
    index = np.sort(train if split == "train" else test)
    images = torch.from_numpy(digits.images[index].astype(np.float32) / 16.0).unsqueeze(1)
    return images, torch.from_numpy(labels[index])


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into a protocol-2 pickle as _codecs.encode(text, "latin1").
    if encoding.lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not needed by a data batch")
    return text.encode("latin1")


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # object arrays would hold arbitrary pickled objects
        raise pickle.UnpicklingError("object arrays are not data")
    return dtype


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],  # numpy 1 name
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],  # numpy 2 name
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _latin1,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numpy arrays, nothing else: any other global a pickle names
    (``os.system``, ``builtins.eval``...) would be called while loading, so it is refused."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        # encoding="bytes": the batches were pickled by Python 2, whose str (dict keys, array
        # data) must come back as bytes (keys b"data", b"labels"), as the CIFAR page documents.
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _SAFE_GLOBALS.get((module, name))
        if found is None:
            reference = f"{module}.{name}"
            raise SnnbenchError(
                f"refusing to load {self.path}: it contains code references "
                f"({reference!r}) that a data batch never needs; replace it "
                f"with the original CIFAR python batch file"
            )
        return found


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    broken = f"{path} is not a readable CIFAR python batch; replace it with the original file"
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, path).load()
        data, labels = batch[b"data"], np.asarray(batch[label_key], dtype=np.int64)
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OSError,
    ) as error:
        raise SnnbenchError(f"{broken} ({type(error).__name__})") from error
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or labels.shape != (data.shape[0],)
    ):
        raise SnnbenchError(f"{broken} (expected uint8 data [N, 3072] and N labels)")
    return data.reshape(-1, 3, 32, 32), labels


def _load_batches(
    folder: Path, names: list[str], label_key: bytes, num_classes: int, archive: str
) -> tuple[Tensor, Tensor]:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise SnnbenchError(
            f"{folder} is incomplete: {', '.join(missing)} missing; extract {archive} there again"
        )
    parts = [_read_batch(folder / name, label_key) for name in names]
    images = torch.from_numpy(np.concatenate([part[0] for part in parts]))
    labels = torch.from_numpy(np.concatenate([part[1] for part in parts]))
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SnnbenchError(
            f"{folder} holds labels outside [0, {num_classes}); replace it with "
            f"the files of {archive}"
        )
    return images.float().div_(255), labels


def _verified_sha256(archive: Path) -> str:
    """The archive's sha256, checked against ``SHA256SUMS`` beside it when that lists it."""
    digest, sums = hashlib.sha256(), archive.parent / "SHA256SUMS"
    progress.status(f"checking the sha256 of {archive} ({archive.stat().st_size >> 20} MiB)")
    with archive.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    listed = sums.read_text().splitlines() if sums.is_file() else []
    for expected, name in (line.split(maxsplit=1) for line in listed if len(line.split()) == 2):
        if name.lstrip("*") == archive.name and expected.lower() != digest.hexdigest():
            raise SnnbenchError(
                f"{archive} fails its sha256 check ({sums} lists {expected}, the "
                f"file has {digest.hexdigest()}): it is corrupt or incomplete; "
                f"copy it again"
            )
    return digest.hexdigest()


def _unpack_split(archive: Path, base: Path, split: str) -> None:
    """Extract ``cifar10-jpeg/<split>/`` into ``base`` through a temporary folder renamed into
    place, so an interrupted unpack never leaves a half-filled split under the final name."""
    if not hasattr(tarfile, "data_filter"):
        raise SnnbenchError(
            "unpacking the archive safely needs Python >= 3.10.12 or 3.11.4 "
            "(tarfile filters); upgrade Python or unpack it yourself"
        )
    base.mkdir(parents=True, exist_ok=True)
    prefix, target = f"cifar10-jpeg/{split}/", base / "cifar10-jpeg" / split
    temporary = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
    progress.status(f"unpacking {split}/ of {archive.name} into {base} (once)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = (member for member in tar if member.name.startswith(prefix))
            # filter="data": no absolute paths, no ".." or links leading out, no device files.
            tar.extractall(temporary, members=members, filter="data")
        if not (temporary / prefix).is_dir():
            raise SnnbenchError(
                f"{archive} holds no {prefix} folder: it is not the CIFAR-10 JPEG "
                f"archive; use the one described in shared/data/README.md"
            )
        target.parent.mkdir(exist_ok=True)
        if not target.is_dir():  # else another process unpacked it meanwhile
            os.replace(temporary / prefix, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise SnnbenchError(
            f"cannot unpack {archive} into {base} ({error}); copy the archive "
            f"again or free disk space"
        ) from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _cifar10_jpeg_folder(root: Path, split: str) -> Path | None:
    """``cifar10-jpeg/`` holding ``split``: under root, or unpacked from the archive into root
    (writable) or the cache dir (keyed by the archive's sha256); None when neither is there."""
    folder, archive = root / "cifar10-jpeg", root / "cifar10-jpeg.tar.gz"
    if (folder / split).is_dir():
        return folder
    if not archive.is_file():
        if folder.is_dir():
            raise SnnbenchError(
                f"{folder} has no {split}/ folder; unpack the whole "
                f"cifar10-jpeg.tar.gz there, or put the archive under {root}"
            )
        return None
    digest = None if _writable(root) else _verified_sha256(archive)
    base = root if digest is None else _cache_dir() / f"cifar10-jpeg-{digest[:16]}"
    if not (base / "cifar10-jpeg" / split).is_dir():
        if digest is None:
            _verified_sha256(archive)
        _unpack_split(archive, base, split)
    return base / "cifar10-jpeg"


def _list_image_folder(split_dir: Path, classes: tuple[str, ...]) -> tuple[list[Path], list[int]]:
    found = tuple(sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir()))
    if found != classes:
        raise SnnbenchError(
            f"{split_dir} should hold one folder per class ({' '.join(classes)}), "
            f"found: {' '.join(found) or 'none'}; unpack the archive again"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):  # sorted class names = label index (ImageFolder)
        names = sorted(
            path
            for path in (split_dir / name).iterdir()
            if path.suffix.lower() in (".jpg", ".jpeg")
        )
        files += names
        labels += [label] * len(names)
    if not files:
        raise SnnbenchError(f"{split_dir} holds no .jpg images; unpack the archive again")
    return files, labels


def _decode_images(files: list[Path], size: int) -> Tensor:
    """uint8 ``[N, 3, size, size]`` from image files (Pillow: about 1.7 s per 10,000 here)."""
    from PIL import Image

    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    bar = progress.begin(f"decoding {files[0].parent.parent.name}/ (once)", len(files), "images")
    for index, path in enumerate(files):
        if index % 1000 == 999:
            bar.advance(1000)
        try:
            with Image.open(path) as image:
                if image.size != (size, size):
                    raise SnnbenchError(
                        f"{path} is {image.size[0]}x{image.size[1]}, not "
                        f"{size}x{size}; use the CIFAR-10 JPEG archive's files"
                    )
                images[index] = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise SnnbenchError(
                f"cannot decode {path} ({type(error).__name__}); the image "
                f"folder is corrupt: unpack the archive again"
            ) from error
    bar.advance(len(files) % 1000)
    bar.end()
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _load_image_folder(
    folder: Path, split: str, classes: tuple[str, ...], size: int
) -> tuple[Tensor, Tensor]:
    """Decoded once, then read back from a safetensors cache beside the folder when its parent is
    writable, else in the cache dir (keyed by the folder's path)."""
    files, labels = _list_image_folder(folder / split, classes)
    cache = folder.parent / f"{folder.name}.{split}.safetensors"
    if not _writable(folder.parent):
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        cache = _cache_dir() / f"{folder.name}-{key}.{split}.safetensors"
    listing = "\n".join(f"{path.parent.name}/{path.name}" for path in files)
    metadata = {
        "files": str(len(files)),
        "size": str(size),
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }
    try:
        with safe_open(str(cache), framework="pt") as file:
            if file.metadata() == metadata:  # else the folder changed since: decode again
                return file.get_tensor("images").float().div_(255), file.get_tensor("labels")
    except (OSError, SafetensorError, KeyError):  # none yet, or broken: (re)build it
        pass
    images, label_tensor = _decode_images(files, size), torch.tensor(labels, dtype=torch.int64)
    _write_cache(cache, images, label_tensor, metadata)
    return images.float().div_(255), label_tensor


def _load_cifar10(split: str, root: Path | None) -> tuple[Tensor, Tensor]:
    root = _data_root(root)
    batches = root / "cifar-10-batches-py"
    if batches.is_dir():
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return _load_batches(batches, names, b"labels", 10, "cifar-10-python.tar.gz")
    folder = _cifar10_jpeg_folder(root, split)
    if folder is None:
        raise SnnbenchError(
            f"cifar10 not found: looked for {batches}/, {root / 'cifar10-jpeg'}/ "
            f"and {root / 'cifar10-jpeg.tar.gz'}; put torchvision's "
            f"cifar-10-batches-py/ or the cifar10-jpeg.tar.gz archive under "
            f"{root}, {HOW_TO_SET_ROOT}"
        )
    return _load_image_folder(folder, split, CIFAR10_CLASSES, 32)


def _load_cifar100(split: str, root: Path | None) -> tuple[Tensor, Tensor]:
    root = _data_root(root)
    folder = root / "cifar-100-python"
    if not folder.is_dir():
        raise SnnbenchError(
            f"cifar100 not found: looked for {folder}/; put torchvision's "
            f"cifar-100-python/ (from cifar-100-python.tar.gz) under {root}, "
            f"{HOW_TO_SET_ROOT}"
        )
    return _load_batches(folder, [split], b"fine_labels", 100, "cifar-100-python.tar.gz")


# --- where the images came from (model cards and the leaderboard header) ---------------------

_DIGESTS: dict[tuple, str] = {}


def _files_sha256(files: list[Path]) -> str:
    """One sha256 over the files' bytes in the given order (memoised by path, size and mtime)."""
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        for path in files:
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def data_source(name: str, root: str | Path | None = None) -> dict[str, str]:
    """Which copy of ``name`` the loaders read: ``{"source", "sha256"?, "note"?}``. CIFAR-10
    from the JPEG copy says so (re-encoded pixels differ slightly from the original's), with
    the archive's sha256 (or, unpacked without it, the sha256 of its file listing); the
    original python batches give the sha256 of the batch files in name order."""
    if name == "digits":
        import sklearn

        return {"source": f"scikit-learn {sklearn.__version__} load_digits"}
    if name not in ("cifar10", "cifar100"):
        return {"source": dataset_info(name).summary}
    root = _data_root(None if root is None else Path(root))
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    batches = (
        sorted(
            f
            for f in folder.glob("*")
            if f.is_file() and "batch" in f.name or f.name in ("train", "test")
        )
        if folder.is_dir()
        else []
    )
    if batches:
        return {
            "source": f"original python batches ({folder.name}/)",
            "sha256": _files_sha256(batches),
        }
    archive, jpeg = root / "cifar10-jpeg.tar.gz", root / "cifar10-jpeg"
    note = "JPEG copy: re-encoded pixels differ slightly from the original CIFAR-10"
    if name == "cifar10" and archive.is_file():
        return {
            "source": "JPEG copy (cifar10-jpeg.tar.gz)",
            "sha256": _files_sha256([archive]),
            "note": note,
        }
    if name == "cifar10" and jpeg.is_dir():
        listing = "\n".join(str(p.relative_to(jpeg)) for p in sorted(jpeg.rglob("*.jp*g")))
        return {
            "source": "JPEG copy (cifar10-jpeg/, unpacked)",
            "note": note,
            "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        }
    return {"source": "not found under the data root"}


def describe_source(source: dict[str, Any] | None) -> str:
    """``JPEG copy (cifar10-jpeg.tar.gz), sha256 1a2b3c4d5e6f...`` for a header or a table."""
    if not source:
        return ""
    digest = source.get("sha256") or source.get("listing_sha256")
    return source.get("source", "?") + (f", sha256 {digest[:12]}..." if digest else "")


def _register(info: DatasetInfo, paper: str) -> None:
    DATASETS.add(info.name, info, summary=info.summary, paper=paper)


_CIFAR = "Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images"
_register(
    DatasetInfo(
        "digits",
        10,
        1,
        8,
        (0.0,),
        (1.0,),
        "sklearn's 8x8 handwritten digits, seeded stratified 1,437/360 split",
        _load_digits,
    ),
    "UCI optical recognition of handwritten digits (scikit-learn load_digits)",
)
_register(
    DatasetInfo(
        "cifar10",
        10,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        "CIFAR-10, 32x32 RGB, 50,000/10,000 (python batches or JPEG copy)",
        _load_cifar10,
    ),
    _CIFAR,
)
_register(
    DatasetInfo(
        "cifar100",
        100,
        3,
        32,
        (0.5071, 0.4867, 0.4408),
        (0.2675, 0.2565, 0.2761),
        "CIFAR-100 fine labels, 32x32 RGB, 50,000/10,000 (python batches)",
        _load_cifar100,
    ),
    _CIFAR,
)
