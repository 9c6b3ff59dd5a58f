"""Where the work runs: device choice, mixed precision, and batches that shrink on out-of-memory."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

import torch

from snnbench.errors import SnnbenchError

R = TypeVar("R")


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    choice = (device or "auto").lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise SnnbenchError("--device cuda was asked for but no CUDA GPU is visible; use "
                            "--device cpu or install a CUDA build of torch")
    if choice != "cpu" and not choice.startswith("cuda"):
        raise SnnbenchError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(choice)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA where supported; fp32 elsewhere (fp16 would need loss scaling)."""
    if device.type != "cuda" or not enabled or not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def map_batches(fn: Callable[[slice], R], n: int, batch_size: int) -> tuple[list[R], int]:
    """Apply ``fn`` to consecutive slices of ``range(n)``, halving the batch on out-of-memory.

    Returns the results and the batch size that worked. Results must not depend on it.
    """
    size = max(1, batch_size)
    while True:
        try:
            return [fn(part) for part in batches(n, size)], size
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            if size == 1:
                raise SnnbenchError("out of memory even with a batch of 1 image; free the GPU "
                                    "(other processes) or run with --device cpu") from None
            torch.cuda.empty_cache()
            size //= 2
