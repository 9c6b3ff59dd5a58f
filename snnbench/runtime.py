"""Where the work runs: device choice, mixed precision, opt-in compilation, and batches that
shrink on out-of-memory."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import time
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from snnbench.errors import SnnbenchError

R = TypeVar("R")


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    choice = (device or "auto").lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise SnnbenchError(
            "--device cuda was asked for but no CUDA GPU is visible; use "
            "--device cpu or install a CUDA build of torch"
        )
    if choice != "cpu" and not choice.startswith("cuda"):
        raise SnnbenchError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(choice)


def cpu_threads(requested: int | None = None) -> int:
    """Intra-op threads for torch on the CPU: ``requested``, else one per idle core.

    Why not torch's default of one per core: a thread whose core is busy spins. Measured on a
    2-core machine (APGD-10, EoT 10, 100 digits): idle, 2 threads 2.67 s and 1 thread 3.16 s;
    with another process on one core, 2 threads 10.4 s and 1 thread 3.76 s. Idle cores are
    measured at start-up (:func:`busy_cores`), so a busy machine gets fewer threads.
    """
    if requested is not None:
        if requested < 1:
            raise SnnbenchError(f"--threads must be at least 1, got {requested}")
        return requested
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    busy = busy_cores()
    return max(1, min(cores, round(cores - busy)))


def busy_cores(window_s: float = 0.25) -> float:
    """How many cores other work keeps busy now: from two reads of /proc/stat ``window_s``
    apart (Linux), else the 1-minute load average (which lags a finished job by a minute)."""

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    first = read()
    if first is not None:
        time.sleep(window_s)
        second = read()
        if second is not None and second[0] > first[0]:
            total, idle = second[0] - first[0], second[1] - first[1]
            return (os.cpu_count() or 1) * (1 - idle / total)
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def configure_threads(requested: int | None = None) -> int:
    """Set torch's CPU threads by :func:`cpu_threads`; ``OMP_NUM_THREADS`` set by the user wins."""
    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = cpu_threads(requested)
    torch.set_num_threads(threads)
    return threads


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30
_allocator_tuned = False


def tune_allocator(keep_bytes: int = KEEP_BYTES) -> bool:
    """Keep freed CPU tensors of up to ``keep_bytes`` in the process (glibc only; else no-op).

    glibc serves blocks above its mmap threshold (dynamic, at most 32 MiB) with fresh ``mmap``
    and unmaps them on free, and trims the heap top above ``M_TRIM_THRESHOLD``: a training step
    that frees and reallocates its activations every batch then spends about half its time in
    page faults zeroing new pages. Raising both thresholds keeps the pages for reuse. Called
    once at start-up (the CLI's callback, the benchmarks); it cannot be undone, and a second
    call does nothing. True when the thresholds were set.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl or another libc without mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    value = min(int(keep_bytes), 2**31 - 1)
    _allocator_tuned = bool(mallopt(M_MMAP_THRESHOLD, value)) & bool(
        mallopt(M_TRIM_THRESHOLD, value)
    )
    return _allocator_tuned


CHANNELS_LAST_ENV = "SNNBENCH_CHANNELS_LAST"


def place(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` on ``device``, its conv weights channels_last where its arch runs faster so.

    An arch declares the device types where channels_last pays (``channels_last=`` in its
    registration; measured on the CPU in docs/performance.md). A conv with channels_last weights
    gives channels_last outputs, and batch norm, pooling and our neurons keep the layout, so the
    inputs need no change. The layout changes strides, not values: the forward logits were
    bit-identical in every arch measured; only training's weight gradients sum in another order
    (last bits). ``SNNBENCH_CHANNELS_LAST`` = ``1`` or ``0`` forces it on or off.
    """
    device = torch.device(device)
    model = model.to(device)
    forced = os.environ.get(CHANNELS_LAST_ENV, "").strip().lower()
    if forced not in ("", "auto", "0", "1"):
        raise SnnbenchError(f"{CHANNELS_LAST_ENV} must be 0, 1 or auto, got {forced!r}")
    wanted = (
        device.type in getattr(model, "channels_last_on", ())
        if forced in ("", "auto")
        else forced == "1"
    )
    return model.to(memory_format=torch.channels_last if wanted else torch.contiguous_format)


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


def map_batches(
    fn: Callable[[slice], R], n: int, batch_size: int, restart: Callable[[], None] | None = None
) -> tuple[list[R], int]:
    """Apply ``fn`` to consecutive slices of ``range(n)``, halving the batch on out-of-memory.

    Returns the results and the batch size that worked. Results must not depend on it.
    ``restart`` runs before every attempt (e.g. re-seeding), so that a retry starts afresh
    rather than from a random stream the failed attempt half used.
    """
    size = max(1, batch_size)
    while True:
        if restart is not None:
            restart()
        try:
            return [fn(part) for part in batches(n, size)], size
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            if size == 1:
                raise SnnbenchError(
                    "out of memory even with a batch of 1 image; free the GPU "
                    "(other processes) or run with --device cpu"
                ) from None
            torch.cuda.empty_cache()
            size = max(1, min(size, n) // 2)  # a batch above n was one batch of n


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` (default mode) of ``model``, for the compute only.

    The weights stay those of ``model``: save and load it, never the wrapper, whose state_dict
    keys carry an ``_orig_mod.`` prefix. Compilation is lazy: wrap the calls in
    :func:`compile_errors` to turn a failure at the first call into one line. Random draws
    (noisy and stochastic neurons) use torch's own generator, as in eager mode, rather than
    inductor's: a stochastic model then draws the same noise compiled or not.
    """
    try:
        return torch.compile(model, options={"fallback_random": True})
    except Exception as exc:  # e.g. a Python version dynamo does not support yet
        raise SnnbenchError(_compile_failed(exc)) from None


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` is a :func:`compile_model` wrapper (without importing dynamo)."""
    return isinstance(getattr(model, "_orig_mod", None), nn.Module)


def _compile_failed(exc: BaseException) -> str:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return (
        f"--compile failed ({type(exc).__name__}: {reason}); run the same command without "
        "--compile (it only changes the speed)"
    )


def _from_compiler(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) comes from dynamo, AOTAutograd or inductor."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__module__.startswith(
            ("torch._dynamo", "torch._inductor", "torch._functorch")
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def compile_errors(active: bool = True) -> Iterator[None]:
    """Inside, a failure of ``torch.compile`` (raised at the first forward or backward: no C++
    compiler, an unsupported operation) becomes a :class:`SnnbenchError` that says what to do."""
    try:
        yield
    except SnnbenchError:
        raise
    except Exception as exc:
        if not active or not _from_compiler(exc):
            raise
        raise SnnbenchError(_compile_failed(exc)) from None
