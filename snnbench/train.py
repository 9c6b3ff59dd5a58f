"""The training loop: BPTT with the defence's hooks, a checkpoint every epoch, resume after a kill.

docs/defenses.md: SGD (momentum 0.9), lr 0.1 with a per-epoch cosine schedule to 0,
cross-entropy on time-averaged logits, the track's weight decay unless the defence sets another;
random crop + flip on 32-px data (none on event frames: our choice), seeded per batch and built
by ``loaders.py`` (worker processes on CUDA); AMP (bf16 where supported) on CUDA, fp32 on the
CPU; ``compile`` runs the forward and backward through ``torch.compile`` (opt-in).

Resume: after each epoch the weights, the optimiser's momentum and the history go to
``train-state.safetensors`` + ``train-state.json``. Each epoch's shuffling and random draws are
seeded from (seed, epoch), and each batch's crop and flip from (seed, epoch, batch), so a resumed
run continues exactly where the killed one stopped, with any number of loader workers.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from snnbench import progress
from snnbench.checkpoint import (
    CARD,
    card_head,
    default_home,
    load_card,
    read_weights_meta,
    save_checkpoint,
    save_weights,
    weights_meta,
)
from snnbench.config import TRACK_WEIGHT_DECAY, ModelConfig, TrainConfig, model_name
from snnbench.data import data_source, dataset_info, input_card, load_dataset
from snnbench.defenses import Composite, Defense, LossContext, create_defense
from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write_json, check_name, stable_seed
from snnbench.loaders import EpochBatches, check_workers, epoch_loader
from snnbench.model import ModelSpec, build, resolve
from snnbench.neurons import spiking_neurons
from snnbench.train_schedule import cosine_lr
from snnbench.runtime import (
    autocast,
    batches,
    compile_errors,
    compile_model,
    is_oom,
    place,
    resolve_device,
)

if TYPE_CHECKING:
    from snnbench.recipe import Recipe

STATE = "train-state.safetensors"
STATE_JSON = "train-state.json"
EpochCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainOutcome:
    name: str
    folder: Path
    card: dict[str, Any]
    status: str  # "trained", "resumed" or "up to date"


@torch.no_grad()
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 256
) -> float:
    model.eval()
    correct = 0
    for part in batches(len(x), batch_size):
        logits = model(x[part].to(device))
        correct += int((logits.argmax(1).cpu() == y[part]).sum())
    return correct / max(1, len(x))


def _identity(spec: ModelSpec, train: TrainConfig) -> dict[str, Any]:
    return {"spec": spec.to_dict(), "train": dataclasses.asdict(train)}


def _momentum_holder(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> nn.Module:
    """Weights and every optimiser's momentum buffers as one module, for one safetensors file."""
    holder = nn.Module()
    holder.model = model
    buffers = nn.ParameterList()
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                buffers.append(
                    nn.Parameter(
                        buf if buf is not None else torch.zeros_like(p), requires_grad=False
                    )
                )
    holder.momentum = buffers
    return holder


def _save_state(
    folder: Path,
    model: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    spec: ModelSpec,
    train: TrainConfig,
    epoch: int,
    history: list,
) -> None:
    """The weights, momentum, epoch count and history in one atomic file (a kill between two
    files could pair one epoch's weights with another's count); the JSON is a readable copy."""
    state = {**_identity(spec, train), "epochs_done": epoch + 1, "history": history}
    save_weights(
        folder / STATE,
        _momentum_holder(model, optimizers),
        {**weights_meta(spec), "state": json.dumps(state)},
    )
    atomic_write_json(folder / STATE_JSON, state)


def _load_state(
    folder: Path,
    model: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    spec: ModelSpec,
    train: TrainConfig,
) -> tuple[int, list]:
    """(epochs already done, history) from a matching training state, else (0, [])."""
    state_path = folder / STATE
    if not state_path.is_file():
        return 0, []
    try:
        with safe_open(str(state_path), framework="pt") as handle:
            meta = json.loads(read_weights_meta(handle.metadata())["state"])
        state = load_file(str(state_path))
    except Exception:  # a damaged state only costs the epochs since the start
        return 0, []
    if {k: meta.get(k) for k in ("spec", "train")} != json.loads(
        json.dumps(_identity(spec, train))
    ):
        return 0, []
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    )
    owned = [(opt, p) for opt in optimizers for g in opt.param_groups for p in g["params"]]
    for i, (opt, p) in enumerate(owned):  # the order _momentum_holder saved them in
        opt.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(
            state[f"momentum.{i}"]
        )  # p's layout
    return int(meta["epochs_done"]), list(meta["history"])


def _optimizers(
    model: nn.Module, defense: Composite, train: TrainConfig, decay: float
) -> tuple[torch.optim.Optimizer, list[tuple[Defense, torch.optim.Optimizer]]]:
    """The main SGD (defence-owned parameters excluded, some without decay) and the defences' own."""
    separate = {id(p) for p in defense.separate_parameters(model)}
    no_decay = {id(p) for p in defense.no_decay_parameters(model)}
    params = [p for p in model.parameters() if id(p) not in separate]
    groups = [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]
    main = torch.optim.SGD([g for g in groups if g["params"]], lr=train.lr, momentum=train.momentum)
    return main, defense.own_optimizers(model)


def train_step(
    model: nn.Module,
    defense: Composite,
    optimizer: torch.optim.Optimizer,
    own: list[tuple[Defense, torch.optim.Optimizer]],
    xb: torch.Tensor,
    yb: torch.Tensor,
    train: TrainConfig,
    epoch: int,
    device: torch.device,
    forward: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch already on ``device``: the defence's inputs, the losses,
    backward, every optimiser and ``after_step``; returns (loss, logits). ``forward`` (a
    compiled ``model``) computes the logits when given. Shared with
    ``benchmarks/recipe_cost.py`` so the benchmark times exactly what training runs."""
    x_in = defense.training_inputs(model, xb, yb)
    model.train()
    with autocast(device, train.amp):
        logits = (model if forward is None else forward)(x_in)
        ctx = LossContext(model, xb, x_in, yb, logits, epoch, train.epochs)
        task = defense.task_loss(ctx)
        loss = F.cross_entropy(logits.float(), yb) if task is None else task
        extra = defense.extra_loss(ctx)
        if extra is not None:
            loss = loss + extra
    if not torch.isfinite(loss):
        raise SnnbenchError(
            f"the training loss became {loss.item()} in epoch {epoch + 1}; "
            "the last good checkpoint is kept; lower --lr or the batch size"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    for member, own_optimizer in own:
        member.step_optimizer(own_optimizer, epoch, train.epochs)
    defense.after_step(model, epoch)
    return loss, logits


def _train_epoch(
    model: nn.Module,
    defense: Composite,
    optimizer: torch.optim.Optimizer,
    own: list[tuple[Defense, torch.optim.Optimizer]],
    x: torch.Tensor,
    y: torch.Tensor,
    train: TrainConfig,
    augment: bool,
    epoch: int,
    device: torch.device,
    workers: int | None = None,
    forward: nn.Module | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One epoch; ``forward`` (a compiled ``model``) computes the logits when given;
    ``on_batch(images)`` after each batch."""
    generator = torch.Generator().manual_seed(stable_seed(train.seed, "epoch", epoch))
    torch.manual_seed(stable_seed(train.seed, "draws", epoch))
    order = torch.randperm(len(x), generator=generator)
    epoch_batches = EpochBatches(
        x, y, order, train.batch_size, augment=augment, seed=train.seed, epoch=epoch
    )
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for xb, yb in epoch_loader(epoch_batches, device, workers):
        loss, logits = train_step(
            model, defense, optimizer, own, xb, yb, train, epoch, device, forward
        )
        total_loss += loss.item() * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(yb)
        if on_batch:
            on_batch(len(yb))
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "loss": total_loss / seen,
        "train_acc": correct / seen,
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / max(seconds, 1e-9), 1),
    }


def _finished(folder: Path, spec: ModelSpec, train: TrainConfig) -> dict[str, Any] | None:
    """The card of an already finished identical model, None if none; an error if it differs."""
    if not (folder / CARD).is_file():
        return None
    card = load_card(folder)
    wanted = {
        "spec": json.loads(json.dumps(spec.to_dict())),
        "train": json.loads(json.dumps(dataclasses.asdict(train))),
    }
    differ = _differences({"spec": card.get("spec"), "train": card.get("train")}, wanted)
    if differ:
        raise SnnbenchError(
            f"a model named {folder.name!r} with other settings already exists in "
            f"{folder.parent} ({'; '.join(differ[:4])}); pick another --name "
            f"or delete {folder}"
        )
    return card


def _differences(have: Any, want: Any, key: str = "") -> list[str]:
    """``key: stored X, asked Y`` for every leaf setting that differs (dotted keys)."""
    if isinstance(have, dict) and isinstance(want, dict):
        return [
            line
            for k in sorted(set(have) | set(want), key=str)
            for line in _differences(have.get(k), want.get(k), f"{key}.{k}" if key else str(k))
        ]
    return [] if have == want else [f"{key}: stored {have!r}, asked {want!r}"]


def recipe_fields(recipe: Recipe | str | None) -> dict[str, Any]:
    """The card's record of the recipe that trained the model: its name, and for a ``Recipe``
    its file and TOML text, so attacks rebuild it from the card wherever the card goes
    (``api.recipe_of``) instead of looking the name up among the packaged recipes."""
    if recipe is None or isinstance(recipe, str):
        return {"recipe": recipe}
    return {"recipe": recipe.name, "recipe_path": recipe.source, "recipe_toml": recipe.text}


def train_model(
    config: ModelConfig,
    train: TrainConfig | None = None,
    *,
    home: Path | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    recipe: Recipe | str | None = None,
    on_epoch: EpochCallback | None = None,
    workers: int | None = None,
    compile: bool = False,
) -> TrainOutcome:
    """Train (or resume, or find already trained) the model of ``config`` in ``home/models``.

    ``workers`` (loader processes; None: 0 on the CPU, a few on CUDA) and ``compile`` change
    how fast, never what is trained: neither is part of the model's identity. ``recipe`` (a
    ``Recipe``, or only its name) is recorded in the card.
    """
    train = train or TrainConfig()
    check_workers(workers)
    spec = resolve(config)
    name = check_name(
        config.name or model_name(spec.defense, spec.arch, spec.dataset), "model name (--name)"
    )
    folder = Path(home or default_home()) / "models" / name
    card = _finished(folder, spec, train)
    if card is not None:
        return TrainOutcome(name, folder, card, "up to date")
    dev = resolve_device(device)
    x, y = load_dataset(spec.dataset, "train", data_root)
    x_test, y_test = load_dataset(spec.dataset, "test", data_root)
    info = dataset_info(spec.dataset)
    progress.status(f"building {name}")
    torch.manual_seed(stable_seed(train.seed, "init"))
    model = place(build(spec), dev)
    defense = create_defense(spec.defense, spec.settings, spec.track)
    defense.setup(model)
    decay = (
        train.weight_decay
        if train.weight_decay is not None
        else defense.weight_decay(TRACK_WEIGHT_DECAY[spec.track])
    )
    optimizer, own = _optimizers(model, defense, train, decay)
    everything = [optimizer, *(opt for _, opt in own)]
    folder.mkdir(parents=True, exist_ok=True)
    start, history = _load_state(folder, model, everything, spec, train)
    augment = (
        train.augment if train.augment is not None else info.image_size >= 28 and not info.frames
    )
    if augment and info.frames:
        raise SnnbenchError(
            f"{spec.dataset} trains without augmentation (crop and flip are image "
            "augmentations, not event ones); set augment = false"
        )
    forward = compile_model(model) if compile else None  # weights stay on ``model``
    bar = progress.begin(f"train {name}", train.epochs * len(x), "images", start * len(x))
    for epoch in range(start, train.epochs):
        bar.describe(f"epoch {epoch + 1}/{train.epochs}")
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(train.lr, epoch, train.epochs)
        try:
            with compile_errors(compile):
                history.append(
                    _train_epoch(
                        model,
                        defense,
                        optimizer,
                        own,
                        x,
                        y,
                        train,
                        augment,
                        epoch,
                        dev,
                        workers,
                        forward,
                        bar.advance,
                    )
                )
        except RuntimeError as exc:
            bar.end(ok=False)
            if not is_oom(exc):
                raise
            raise SnnbenchError(
                f"out of memory training {name} with batch size "
                f"{train.batch_size}; try --batch-size {max(1, train.batch_size // 2)}"
                " (finished epochs are kept)"
            ) from None
        _save_state(folder, model, everything, spec, train, epoch, history)
        if on_epoch:
            on_epoch(epoch + 1, train.epochs, history[-1])
    bar.end()
    progress.status(f"testing {name} on {len(x_test)} clean test images")
    for neuron in spiking_neurons(model):  # recording was for the training losses only
        neuron.record_potentials = neuron.record_currents = False
    clean = accuracy(model, x_test, y_test, dev)
    card = save_checkpoint(
        folder,
        model,
        spec,
        {
            **card_head(name, spec, defense.stochastic()),
            "input": input_card(info),
            "data_source": data_source(spec.dataset, data_root),
            "train": dataclasses.asdict(train),
            "weight_decay": decay,
            **recipe_fields(recipe),
            "history": history,
            "clean_accuracy": {"split": "test", "n": len(x_test), "acc": clean},
            "device": dev.type,
            **({"compiled": True} if compile else {}),
        },
    )
    for leftover in (STATE, STATE_JSON):
        (folder / leftover).unlink(missing_ok=True)
    return TrainOutcome(name, folder, card, "resumed" if start else "trained")
