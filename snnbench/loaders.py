"""Training batches through a ``DataLoader``: batch i of an epoch as item i of a data set.

Why a data set of batches rather than of samples: the epoch's order comes from the training
loop's seeded generator and each batch's crop and flip from its own seed,
``stable_seed(seed, "augment", epoch, i)``, so a batch is the same whichever process builds it
and however many worker processes there are. Workers build the next batches (gather, augment)
while the accelerator computes; on CUDA they hand them over in pinned memory, so the copy to the
GPU runs asynchronously (``non_blocking``).
"""

from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from snnbench.data import augment_batch
from snnbench.errors import SnnbenchError
from snnbench.files import stable_seed

MAX_WORKERS = 4  # the default's cap: more rarely helps a 32-px crop and flip


class EpochBatches(Dataset):
    """Item ``i``: the samples ``order[i * batch_size:(i + 1) * batch_size]``, augmented (crop +
    flip, :func:`snnbench.data.augment_batch`) from the seed ``(seed, "augment", epoch, i)``."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        batch_size: int,
        *,
        augment: bool,
        seed: int,
        epoch: int,
    ) -> None:
        self.x, self.y, self.order = x, y, order
        self.batch_size, self.augment, self.seed, self.epoch = batch_size, augment, seed, epoch

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        xb, yb = self.x[idx], self.y[idx]
        if self.augment:
            generator = torch.Generator().manual_seed(
                stable_seed(self.seed, "augment", self.epoch, i)
            )
            xb = augment_batch(xb, generator)
        return xb, yb


def default_workers(device: torch.device) -> int:
    """0 on the CPU (workers would take cores from the compute threads); on CUDA one per spare
    core, at most :data:`MAX_WORKERS`."""
    if device.type != "cuda":
        return 0
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(0, min(MAX_WORKERS, cores - 1))


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 0:
        raise SnnbenchError(f"--workers must be at least 0, got {workers}")


def epoch_loader(
    batches: EpochBatches, device: torch.device, workers: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches in order, on ``device``; ``workers`` processes build them (None: the
    device's :func:`default_workers`)."""
    check_workers(workers)
    workers = default_workers(device) if workers is None else workers
    cuda = device.type == "cuda"
    # A private generator: DataLoader draws its workers' base seed from it, and drawing from the
    # global one would shift the defences' random draws of the epoch.
    loader = DataLoader(
        batches,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        generator=torch.Generator().manual_seed(batches.seed),
    )
    for xb, yb in loader:
        yield xb.to(device, non_blocking=cuda), yb.to(device, non_blocking=cuda)
