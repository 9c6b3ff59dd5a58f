"""A user's own ``nn.Module`` made fit for the protocol (docs/guide.md, "Your own model").

:func:`load_callable` imports ``MODULE:CALLABLE`` (or ``path/to/file.py:CALLABLE``) and calls
it: this runs the user's code on purpose. :func:`inspect_module` watches the model on a few
test images instead of trusting it: whether it keeps state between calls (refused: reset it
in ``forward``), whether it is random (two seeded passes differ), and the shape of its output
(``[B, K]``, or ``[T, B, K]`` averaged over T). :class:`OwnModel` is what the attacks then
see: the module, averaged over time where needed, with the ``stochastic`` flag they read.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnbench.errors import SnnbenchError

GAP = 1e-5  # logits further apart (relative beyond 1) differ: check C03's tolerance
PROBE_BATCH = 8  # images the inspection runs on (then PROBE_BATCH - 3: the batch axis)
PROBE_SEED = 1234
OWN_CARD_SCHEMA = "snnbench.own-model"  # <home>/modules/<name>/card.json (api.evaluate)


def load_callable(ref: str) -> tuple[nn.Module, str]:
    """The module returned by ``MODULE:CALLABLE`` (importable from the current directory) or
    ``path/to/file.py:CALLABLE``, and the callable's name."""
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise SnnbenchError(
            f"--model {ref!r} is not MODULE:CALLABLE or path/to/file.py:CALLABLE "
            "(a function that returns your nn.Module with its weights loaded)"
        )
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SnnbenchError(f"--model {ref!r}: {where} has no callable {attr!r}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise SnnbenchError(
            f"--model {ref!r}: {attr}() returned {type(model).__name__}, not an "
            "nn.Module; return the model with its weights loaded"
        )
    return model, attr


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise SnnbenchError(f"--model: no file {path}; pass path/to/file.py:CALLABLE")
    name = f"snnbench_own_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined there must be findable (deepcopy)
    spec.loader.exec_module(module)
    return module


def _import_module(name: str) -> Any:
    sys.path.insert(0, str(Path.cwd()))  # "importable from the current directory"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise SnnbenchError(
                f"--model: cannot import {name!r} from {Path.cwd()} or the "
                "installed packages; pass path/to/file.py:CALLABLE"
            ) from None
        raise
    finally:
        sys.path.remove(str(Path.cwd()))


class OwnModel(nn.Module):
    """The user's module as the protocol sees it: ``[T, B, K]`` outputs averaged over T, and
    the ``stochastic`` flag the attacks and the evaluation draws read."""

    def __init__(
        self, inner: nn.Module, stochastic: bool, time_first: bool, timesteps: int
    ) -> None:
        super().__init__()
        self.inner = inner
        self.stochastic = stochastic
        self.time_first = time_first
        self.timesteps = timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out.mean(0) if self.time_first else out


@dataclass(frozen=True)
class Inspection:
    """What the model did on the probe images: its randomness and its output."""

    stochastic: bool
    randomness: str  # how that was decided, for the model card
    output: str  # the output convention, and why it is averaged if it is
    time_first: bool = False
    timesteps: int = 0
    declared: bool | None = None


def inspect_module(
    model: nn.Module,
    x: torch.Tensor,
    num_classes: int,
    declared: bool | None = None,
    declared_by: str = "stochastic=",
) -> Inspection:
    """Watch ``model`` (in eval mode) on the images ``x`` (a few suffice). Refuses a model that
    keeps state between calls, an output snnbench cannot read, and randomness that contradicts
    ``declared`` (by ``declared_by``: the argument or the model's attribute)."""
    model.eval()
    probe = x[:PROBE_BATCH]
    first, again = _same_seed_twice(model, probe)
    gap = max(_gap(first, _pass(model, probe, PROBE_SEED + 7)), _gap(first, again))
    random = gap > GAP
    seen = (
        f"two passes with different seeds differ by up to {gap:.3g} (relative) in the logits"
        if random
        else "passes with different seeds give the same logits (to 1e-5)"
    )
    if declared is not None and declared != random:
        said = (
            f"{declared_by}{declared}"
            if declared_by.endswith("=")
            else f"{declared_by} says {declared}"
        )
        raise SnnbenchError(
            f"{type(model).__name__} is declared {'' if declared else 'not '}"
            f"stochastic ({said}) but {seen}; fix the declaration (or drop it: "
            "snnbench detects randomness) or the model"
        )
    how = ("declared and confirmed: " if declared is not None else "detected: ") + seen
    if _gap(first, again) > GAP:
        how += "; its randomness does not follow torch.manual_seed, so draws cannot be replayed"
    time_first, timesteps, output = _output_layout(model, probe, first, num_classes)
    return Inspection(random, how, output, time_first, timesteps, declared)


def _same_seed_twice(model: nn.Module, probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two passes with one seed. Should they differ, a copy taken before them tells state kept
    between calls (the copy repeats the sequence: refused) from randomness outside torch's
    generator (it does not: allowed, as a stochastic model)."""
    try:
        fresh = copy.deepcopy(model)
    except Exception:  # noqa: BLE001  (a module that cannot be copied: no replay test)
        fresh = None
    first = _first_pass(model, probe)
    again = _pass(model, probe, PROBE_SEED)
    if _gap(first, again) <= GAP:
        return first, again
    replayed = (
        fresh is not None
        and _gap(_pass(fresh, probe, PROBE_SEED), first) <= GAP
        and _gap(_pass(fresh, probe, PROBE_SEED), again) <= GAP
    )
    if replayed or fresh is None:
        why = (
            "a fresh copy repeats the same sequence"
            if replayed
            else "(it cannot be copied to tell state from randomness outside torch's generator)"
        )
        raise SnnbenchError(
            f"{type(model).__name__} keeps state between calls: the same input twice, same "
            f"seed, gives different outputs, {why}; reset the state at the start of forward "
            "(SpikingJelly: functional.reset_net(self); snntorch: utils.reset(self) or "
            "init_leaky()) and run it again"
        )
    return first, again


def _first_pass(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first pass, where a model built for other inputs fails: one line, cause chained."""
    try:
        return _pass(model, x, PROBE_SEED)
    except SnnbenchError:
        raise
    except Exception as exc:  # noqa: BLE001  (the user's code: any error it raises)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SnnbenchError(
            f"{type(model).__name__} fails on images {list(x.shape)} in [0, 1] "
            f"({type(exc).__name__}: {first}); it must take [B, C, H, W] images "
            "of the data set (check --data / dataset=)"
        ) from exc


def _pass(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise SnnbenchError(
            f"{type(model).__name__} returned {type(out).__name__}, not a tensor "
            "of logits; make forward return the logits [B, K] (or [T, B, K])"
        )
    return out.detach().float().cpu()


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest logit difference, relative to the largest logit when that exceeds 1 (float
    noise of GPU kernels scales with it); infinite when the shapes differ."""
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max() / a.abs().max().clamp(min=1)) if a.numel() else 0.0


def _output_layout(
    model: nn.Module, probe: torch.Tensor, out: torch.Tensor, num_classes: int
) -> tuple[bool, int, str]:
    """``(time_first, T, description)``: ``[B, K]`` is used as is; ``[T, B, K]`` (time first,
    the SNN-RAT convention) is averaged over T. The batch axis is found by a second, smaller
    batch, so T = B does not confuse it."""
    small = _pass(model, probe[: max(1, len(probe) - 3)], PROBE_SEED)
    moved = [d for d in range(out.dim()) if d >= small.dim() or out.shape[d] != small.shape[d]]
    shape = (
        f"{list(out.shape)} for a batch of {len(probe)} and {list(small.shape)} for {len(small)}"
    )
    if out.dim() == 2 and moved == [0] and out.shape[1] == num_classes:
        return False, 0, "[B, K] logits"
    if out.dim() == 3 and moved == [1] and out.shape[2] == num_classes:
        steps = int(out.shape[0])
        return (
            True,
            steps,
            (
                f"[T, B, K] with T = {steps} (time first, the batch axis found by two "
                "batch sizes): averaged over T, as rate-coded SNNs read out"
            ),
        )
    raise SnnbenchError(
        f"{type(model).__name__} returns {shape}; snnbench reads [B, K] logits "
        f"(K = {num_classes} classes) or [T, B, K] averaged over T: return "
        "logits of one of these shapes from forward"
    )
