"""snnbench.data: digits split, balanced subsets, augmentation, and the CIFAR loaders on small
generated stand-ins written in the real layouts (plus the shared JPEG archive when present)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from snnbench import data
from snnbench.data import (
    CIFAR10_CLASSES,
    DATASETS,
    augment_batch,
    balanced_subset,
    dataset_info,
    load_dataset,
)
from snnbench.errors import SnnbenchError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared/data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNNBENCH_DATA_ROOT", raising=False)


# ---- registry and digits --------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS.names())
def test_registry_entries_are_consistent(name: str) -> None:
    info = dataset_info(name)
    assert info.name == name and DATASETS.entry(name).summary == info.summary
    assert len(info.mean) == len(info.std) == info.channels
    assert all(s > 0 for s in info.std) and info.num_classes >= 2


def test_registry_names_and_constants() -> None:
    assert {"digits", "cifar10", "cifar100"} <= set(DATASETS.names())
    assert dataset_info("cifar10").std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("cifar100").mean == (0.5071, 0.4867, 0.4408)
    assert (dataset_info("digits").mean, dataset_info("digits").std) == ((0.0,), (1.0,))


def test_unknown_name_and_split() -> None:
    with pytest.raises(SnnbenchError, match="did you mean 'cifar10'"):
        load_dataset("cifar1O", "test")
    with pytest.raises(SnnbenchError, match="use 'train' or 'test'"):
        load_dataset("digits", "val")


def test_digits_split() -> None:
    x_train, y_train = load_dataset("digits", "train")
    x_test, y_test = load_dataset("digits", "test")
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_test.dtype == torch.int64
    assert x_test.min() >= 0 and x_test.max() <= 1 and x_test.max() == 1
    counts = torch.bincount(y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    x_again, y_again = load_dataset("digits", "test")
    assert torch.equal(x_test, x_again) and torch.equal(y_test, y_again)
    # disjoint and complete: together the two splits are the 1,797 images
    rows = sorted(map(tuple, torch.cat([x_train, x_test]).flatten(1).tolist()))
    assert rows == sorted(map(tuple, (load_digits().data / 16).tolist()))


# ---- balanced_subset ------------------------------------------------------------------------


def test_balanced_subset_counts_and_order() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2])
    index = balanced_subset(labels, 6, 3)
    assert index.tolist() == [0, 1, 2, 3, 4, 5]  # the first two of each class, ascending
    index = balanced_subset(labels, 7, 3)  # the remainder goes to class 0
    assert torch.bincount(labels[index], minlength=3).tolist() == [3, 2, 2]
    assert index.tolist() == sorted(index.tolist()) and 6 in index.tolist()


def test_balanced_subset_takes_first_per_class() -> None:
    labels = torch.arange(100) % 10
    index = balanced_subset(labels, 30, 10)
    assert index.tolist() == list(range(30))
    assert torch.bincount(labels[index], minlength=10).tolist() == [3] * 10


def test_balanced_subset_larger_than_split_and_bad_input() -> None:
    labels = torch.tensor([1, 0, 1])
    assert balanced_subset(labels, 10, 2).tolist() == [0, 1, 2]
    with pytest.raises(SnnbenchError):
        balanced_subset(labels, 0, 2)
    with pytest.raises(SnnbenchError, match=r"\[0, 1\)"):
        balanced_subset(labels, 2, 1)


# ---- augment_batch --------------------------------------------------------------------------


def test_augment_batch_shape_and_determinism() -> None:
    x = torch.rand(16, 3, 32, 32)
    first = augment_batch(x, torch.Generator().manual_seed(0))
    again = augment_batch(x, torch.Generator().manual_seed(0))
    other = augment_batch(x, torch.Generator().manual_seed(1))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_augment_batch_flip_only() -> None:
    x = torch.rand(64, 3, 8, 8)
    out = augment_batch(x, torch.Generator().manual_seed(3), padding=0)
    flipped = [torch.equal(o, f) for o, f in zip(out, x.flip(-1))]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(a or b for a, b in zip(flipped, kept))
    assert 0 < sum(flipped) < 64
    assert torch.equal(augment_batch(x, torch.Generator(), padding=0, flip=False), x)


def test_augment_batch_crop_is_a_shift_with_zero_fill() -> None:
    x = torch.rand(32, 1, 8, 8) + 1  # strictly positive, so padding shows as exact zeros
    out = augment_batch(x, torch.Generator().manual_seed(0), padding=2, flip=False)
    for image, crop in zip(x[:, 0], out[:, 0]):
        inside = crop[crop > 0]
        assert inside.numel() >= 36  # at most 2 rows and 2 columns of padding
        rows, cols = torch.nonzero(crop > 0, as_tuple=True)
        shifted = crop[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert any(
            torch.equal(shifted, image[i : i + shifted.shape[0], j : j + shifted.shape[1]])
            for i in range(3)
            for j in range(3)
        )


# ---- cifar10: JPEG folder and archive -------------------------------------------------------


def _write_jpeg_archive(root: Path, per_class: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / "build" / "cifar10-jpeg" / split / name
            folder.mkdir(parents=True)
            for i in range(count + label % 2):  # uneven counts per class
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    archive = root / "data" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "build" / "cifar10-jpeg", arcname="cifar10-jpeg")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (archive.parent / "SHA256SUMS").write_text(f"{digest}  cifar10-jpeg.tar.gz\n")
    return archive.parent


def _pil_pixels(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def test_cifar10_from_archive_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write_jpeg_archive(tmp_path, {"train": 3, "test": 2})
    x, y = load_dataset("cifar10", "test", root)
    assert x.shape == (25, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [2, 3] * 5 and y.tolist() == sorted(y.tolist())
    assert 0 <= x.min() and x.max() <= 1
    reference = _pil_pixels(root / "cifar10-jpeg" / "test" / "bird" / "0001.jpg")
    assert (x[6] * 255 - reference).abs().max() <= 2  # the second bird (classes: 2, 3, 2...)
    assert not (root / "cifar10-jpeg" / "train").exists()  # only the split asked for
    cache = root / "cifar10-jpeg.test.safetensors"
    assert cache.is_file()

    def refuse(*args: object) -> None:
        raise AssertionError("decoded again instead of reading the cache")

    with monkeypatch.context() as patch:
        patch.setattr(data, "_decode_images", refuse)
        x_again, y_again = load_dataset("cifar10", "test", root)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)
    x_train, y_train = load_dataset("cifar10", "train", root)
    assert x_train.shape == (35, 3, 32, 32) and torch.bincount(y_train).tolist() == [3, 4] * 5


def test_cifar10_read_only_root_uses_cache_dir(tmp_path: Path) -> None:
    root = _write_jpeg_archive(tmp_path, {"test": 1})
    root.chmod(0o555)
    try:
        x, y = load_dataset("cifar10", "test", root)
    finally:
        root.chmod(0o755)
    assert x.shape == (15, 3, 32, 32) and not (root / "cifar10-jpeg").exists()
    cached = list((tmp_path / "cache").glob("cifar10-jpeg-*/cifar10-jpeg.test.safetensors"))
    assert len(cached) == 1


def test_cifar10_archive_with_wrong_sha256(tmp_path: Path) -> None:
    root = _write_jpeg_archive(tmp_path, {"test": 1})
    (root / "SHA256SUMS").write_text(f"{'0' * 64}  cifar10-jpeg.tar.gz\n")
    with pytest.raises(SnnbenchError, match="fails its sha256 check") as caught:
        load_dataset("cifar10", "test", root)
    assert "\n" not in str(caught.value)
    assert not (root / "cifar10-jpeg").exists()


def test_cifar10_unpacked_folder_and_corrupt_image(tmp_path: Path) -> None:
    root = _write_jpeg_archive(tmp_path, {"test": 1})
    build = tmp_path / "build"
    x, y = load_dataset("cifar10", "test", build)  # the unpacked folder itself, no archive
    assert x.shape == (15, 3, 32, 32) and (build / "cifar10-jpeg.test.safetensors").is_file()
    (build / "cifar10-jpeg.test.safetensors").unlink()
    (build / "cifar10-jpeg" / "test" / "cat" / "0000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SnnbenchError, match="cannot decode .*0000.jpg"):
        load_dataset("cifar10", "test", build)
    assert root.is_dir()


# ---- cifar10 / cifar100: python batches -----------------------------------------------------


def _batch(
    rng: np.random.Generator, count: int, label_key: bytes, num_classes: int
) -> dict[bytes, object]:
    return {
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        label_key: [int(v) for v in rng.integers(0, num_classes, count)],
        b"batch_label": b"stand-in",
    }


def _write_batches(
    folder: Path, names: list[str], label_key: bytes, num_classes: int
) -> dict[str, dict[bytes, object]]:
    folder.mkdir(parents=True)
    rng, written = np.random.default_rng(1), {}
    for index, name in enumerate(names):
        written[name] = _batch(rng, 4 + index, label_key, num_classes)
        with (folder / name).open("wb") as file:
            pickle.dump(written[name], file, protocol=2)
    return written


CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def test_cifar10_python_batches(tmp_path: Path) -> None:
    written = _write_batches(tmp_path / "cifar-10-batches-py", CIFAR10_BATCHES, b"labels", 10)
    x, y = load_dataset("cifar10", "train", tmp_path)
    data_ = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert x.shape == (30, 3, 32, 32) and y.dtype == torch.int64
    assert torch.equal(
        (x * 255).round().to(torch.uint8), torch.from_numpy(data_).reshape(-1, 3, 32, 32)
    )
    assert y.tolist() == sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    x_test, y_test = load_dataset("cifar10", "test", tmp_path)
    assert x_test.shape == (9, 3, 32, 32) and y_test.tolist() == written["test_batch"][b"labels"]
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(SnnbenchError, match="incomplete: data_batch_3 missing"):
        load_dataset("cifar10", "train", tmp_path)


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2 byte strings (BINSTRING), like the real CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_string(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def test_cifar10_python2_style_batch(tmp_path: Path) -> None:
    """The real batches: Python 2 str keys and data, numpy 1's module name for _reconstruct."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    pixels = np.random.default_rng(2).integers(0, 256, (3, 3072), dtype=np.uint8)
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump({"data": pixels, "labels": [7, 0, 9]})
    blob = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob
    (folder / "test_batch").write_bytes(blob)
    x, y = load_dataset("cifar10", "test", tmp_path)
    assert y.tolist() == [7, 0, 9]
    assert torch.equal((x * 255).round().to(torch.uint8).reshape(3, -1), torch.from_numpy(pixels))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(
    "name, folder, file",
    [("cifar10", "cifar-10-batches-py", "test_batch"), ("cifar100", "cifar-100-python", "test")],
)
def test_malicious_batch_is_refused(tmp_path: Path, name: str, folder: str, file: str) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / folder).mkdir()
    with (tmp_path / folder / file).open("wb") as handle:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(SnnbenchError, match="refusing to load .* code references") as caught:
        load_dataset(name, "test", tmp_path)
    assert "\n" not in str(caught.value) and "system" in str(caught.value)
    assert not marker.exists()


def test_object_arrays_and_garbage_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    with (folder / "test").open("wb") as handle:
        pickle.dump({b"data": np.array([1, "a"], dtype=object)}, handle, protocol=2)
    with pytest.raises(SnnbenchError, match="not a readable CIFAR python batch"):
        load_dataset("cifar100", "test", tmp_path)
    whole = pickle.dumps(_batch(np.random.default_rng(0), 2, b"fine_labels", 100), protocol=2)
    (folder / "test").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SnnbenchError, match="not a readable CIFAR python batch"):
        load_dataset("cifar100", "test", tmp_path)


def test_cifar100_python_batches(tmp_path: Path) -> None:
    written = _write_batches(tmp_path / "cifar-100-python", ["train", "test"], b"fine_labels", 100)
    x, y = load_dataset("cifar100", "test", tmp_path)
    assert x.shape == (5, 3, 32, 32) and y.tolist() == written["test"][b"fine_labels"]
    assert dataset_info("cifar100").num_classes == 100


# ---- missing data ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_data_set_is_one_clear_line(tmp_path: Path, name: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(SnnbenchError) as caught:
        load_dataset(name, "test", root)
    message = str(caught.value)
    assert "\n" not in message and str(root) in message and "--data-root" in message
    assert f"{name} not found" in message


def test_missing_data_root_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNNBENCH_DATA_ROOT", str(tmp_path / "env-root"))
    with pytest.raises(SnnbenchError, match="env-root/cifar-10-batches-py"):
        load_dataset("cifar10", "train")


# ---- the real archive (shared/data) ---------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file(),
    reason="the shared CIFAR-10 JPEG archive is not here",
)
def test_real_cifar10_jpeg_archive(tmp_path: Path) -> None:
    x, y = load_dataset("cifar10", "test", SHARED_DATA)
    assert x.shape == (10_000, 3, 32, 32)
    assert torch.bincount(y, minlength=10).tolist() == [1000] * 10
    assert 0.4 < float(x.mean()) < 0.55
    assert list((tmp_path / "cache").glob("cifar10-jpeg-*/cifar10-jpeg.test.safetensors"))
