"""Training batches through the DataLoader: the same batches, hence the same model, whatever
the number of worker processes; crop and flip seeded per batch."""

from __future__ import annotations

import pytest
import torch
from test_cli import invoke, one_line_error

from snnbench.config import ModelConfig, TrainConfig
from snnbench.errors import SnnbenchError
from snnbench.loaders import EpochBatches, default_workers, epoch_loader
from snnbench.train import train_model

CPU = torch.device("cpu")


def images(n: int = 20, same: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny synthetic 32-px data set (``same``: every image equal)."""
    x = torch.rand(1 if same else n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return x.expand(n, -1, -1, -1).contiguous(), torch.arange(n) % 10


def collect(batches: EpochBatches, workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(epoch_loader(batches, CPU, workers))


def test_batches_are_identical_with_and_without_workers():
    x, y = images()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    batches = EpochBatches(x, y, order, 6, augment=True, seed=0, epoch=3)
    plain, parallel = collect(batches, 0), collect(batches, 2)
    assert [len(b) for b, _ in plain] == [6, 6, 6, 2]
    assert all(
        torch.equal(a, b) and torch.equal(la, lb)
        for (a, la), (b, lb) in zip(plain, parallel, strict=True)
    )


def test_augmentation_is_reproducible_per_batch_and_differs_across_batches_and_epochs():
    x, y = images(same=True)  # equal images: only the seeds make batches differ
    order = torch.arange(len(x))
    first = [b for b, _ in collect(EpochBatches(x, y, order, 5, augment=True, seed=0, epoch=0), 0)]
    again = EpochBatches(x, y, order, 5, augment=True, seed=0, epoch=0)[2][0]
    later = [b for b, _ in collect(EpochBatches(x, y, order, 5, augment=True, seed=0, epoch=1), 0)]
    assert torch.equal(first[2], again)
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], later[0])


def test_unaugmented_batches_are_plain_slices_and_leave_the_global_generator_alone():
    x, y = images()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2))
    state = torch.get_rng_state()
    got = collect(EpochBatches(x, y, order, 8, augment=False, seed=0, epoch=0), 2)
    assert torch.equal(torch.get_rng_state(), state)  # the defences' draws are unchanged
    for (xb, yb), start in zip(got, range(0, len(x), 8), strict=True):
        assert torch.equal(xb, x[order[start : start + 8]]) and torch.equal(
            yb, y[order[start : start + 8]]
        )


def test_worker_count_changes_neither_the_weights_nor_the_identity(tmp_path):
    config, train = ModelConfig("vanilla", "tiny", "digits", 2), TrainConfig(epochs=1, augment=True)
    zero = train_model(config, train, home=tmp_path / "a", device="cpu", workers=0)
    two = train_model(config, train, home=tmp_path / "b", device="cpu", workers=2)
    assert zero.card["weights_sha256"] == two.card["weights_sha256"]
    assert "workers" not in zero.card["train"]
    assert train_model(config, train, home=tmp_path / "a", workers=2).status == "up to date"


def test_default_workers_and_bad_counts():
    assert default_workers(CPU) == 0
    assert 0 <= default_workers(torch.device("cuda")) <= 4
    with pytest.raises(SnnbenchError, match="--workers must be at least 0"):
        train_model(
            ModelConfig("vanilla", "tiny", "digits", 2),
            TrainConfig(epochs=1),
            device="cpu",
            workers=-1,
        )


def test_cli_refuses_a_negative_worker_count(tmp_path):
    result = invoke("train", "vanilla", "--workers", "-1", "--home", tmp_path)
    assert result.exit_code == 2 and "--workers must be at least 0" in one_line_error(result)
