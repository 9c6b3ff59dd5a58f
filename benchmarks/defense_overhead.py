"""What each defence costs: training time, inference time and memory, side by side with vanilla.

    python benchmarks/defense_overhead.py [--arch tiny] [--dataset digits] [--timesteps 4]
        [--batch 64] [--repeats 5] [--defenses all] [--track tgo] [--device auto] [--threads 1]

``--defenses`` takes ``all`` (every registered defence, ``snnbench list defenses``) and/or
comma-separated names or combinations: ``--defenses all,tgo+rat,randhet+at+sr``. ``vanilla`` is
always measured first, as the baseline. Every model is the same arch, data set, T and neuron
track, built as ``snnbench train`` builds it (``resolve`` + ``build``, same seed), so the
defences differ only in what the defence adds.

Measured, per defence, on one batch of ``--batch`` images:

- **train ms/batch**: one full training step exactly as ``snnbench.train`` does it (the step is
  ``train._train_epoch`` run on a one-batch epoch): the defence's generator (AT's PGD, RAT's
  FGSM), the forward, task loss + the defence's extra loss (TGO's L_mc, SR's two extra forwards,
  DLIF's second forward, StoG's prior), backward, the main SGD step and the defence's own
  optimiser (StoG's rho), then the ``after_step`` hook (RAT's retraction). AMP as in training
  (bf16 on CUDA, fp32 on the CPU).
- **infer ms/batch**: one forward in eval mode under ``torch.no_grad``, loss recording off, as a
  trained model is evaluated (stochastic defences still draw their noise: that is their cost).
- **memory**: on CUDA, ``torch.cuda.max_memory_allocated`` during one training step (weights and
  optimiser state included). On the CPU, the peak of **saved-for-backward bytes** during one
  training step: every tensor autograd saves for a backward pass (``saved_tensors_hooks``) is
  counted while it is held, once per storage, parameters and buffers excluded. That is the
  activation memory BPTT keeps over T steps, not the process RSS.

On the CPU torch runs one thread (``--threads``; 0 keeps torch's default): small models gain
nothing from more, and one thread keeps the timings steady when other work shares the machine.
Each timing is the median of ``--repeats`` runs after one warm-up run (``time.perf_counter``;
CUDA synchronised before and after); the repeats go round-robin over all defences, so a change
in the machine's load during the run hits every defence alike. Each ratio is the defence's
number divided by vanilla's, measured in the same run on the same machine: read ``1.50x`` as
"50 % more than vanilla". Absolute numbers depend on the machine; the ratios are what compares
with the papers. ``at``, ``rat`` and ``sr`` build the same network as vanilla, so their inference
ratios (ideally 1.00x) show how noisy the run was. The last line sets randhet's ratios beside
the RandHet paper's Table 8 (SEW-ResNet19, T = 8, a GPU): training 501.18 vs 464.12 s per epoch
(+8 %), test 15.0 vs 12.0 s (+25 %); on the tiny arch, with few neurons per layer, the ratios
need not match.

Data: ``digits`` uses the first ``--batch`` images of the real training split; other data sets
use random [0,1] images of the data set's shape and random labels (the output says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

import snnbench
from snnbench.config import TRACK_WEIGHT_DECAY, TRACKS, ModelConfig, TrainConfig
from snnbench.data import dataset_info
from snnbench.defenses import DEFENSES, create_defense
from snnbench.errors import SnnbenchError
from snnbench.files import stable_seed
from snnbench.model import build, resolve
from snnbench.neurons import spiking_neurons
from snnbench.runtime import resolve_device
from snnbench.train import _optimizers, _train_epoch

# RandHet paper, Table 8 (vanilla SNN vs RandHet, SEW-ResNet19): seconds.
PAPER_TRAIN_S = (464.12, 501.18)  # per training epoch
PAPER_TEST_S = (12.0, 15.0)  # test pass
MIB = 2**20


@dataclasses.dataclass
class Row:
    defense: str
    stochastic: bool
    train_s: float
    infer_s: float
    memory_bytes: int


class SavedBytes:
    """Live and peak bytes of tensors saved for backward, counted once per storage."""

    def __init__(self, model: nn.Module) -> None:
        state = (*model.parameters(), *model.buffers())
        self.skip = {t.untyped_storage().data_ptr() for t in state}
        self.held: dict[int, list[int]] = {}  # storage pointer -> [references, bytes]
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.skip:
            return tensor
        entry = self.held.setdefault(key, [0, storage.nbytes()])
        if entry[0] == 0:
            self.live += entry[1]
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        return _Held(tensor, key, self)

    def release(self, key: int) -> None:
        entry = self.held[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.held[key]

    @staticmethod
    def unpack(packed: Any) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed


class _Held:
    """A saved tensor as autograd holds it; dropping it (graph freed) releases its bytes."""

    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor: torch.Tensor, key: int, meter: SavedBytes) -> None:
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self) -> None:
        self.meter.release(self.key)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` (CUDA synchronised before and after)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def batch_of(dataset: str, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One batch: real digits, else random [0,1] images of the data set's shape."""
    info = dataset_info(dataset)
    if info.name == "digits":
        x, y = snnbench.load_dataset("digits", "train")
        if size > len(x):
            raise SnnbenchError(f"--batch {size} exceeds the {len(x)} digits training images")
        return x[:size], y[:size], f"real data: the first {size} digits training images"
    generator = torch.Generator().manual_seed(seed)
    shape = (size, info.channels, info.image_size, info.image_size)
    x = torch.rand(shape, generator=generator)
    y = torch.randint(info.num_classes, (size,), generator=generator)
    return (
        x,
        y,
        (
            f"random [0,1] images of shape {list(shape[1:])} and random labels "
            f"(no {info.name} data is read)"
        ),
    )


class Candidate:
    """One defence built as ``snnbench train`` builds it, with its train step and inference."""

    def __init__(
        self,
        expr: str,
        args: argparse.Namespace,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
    ) -> None:
        spec = resolve(
            ModelConfig(expr, args.arch, args.dataset, args.timesteps or None, args.track)
        )
        self.timesteps = spec.timesteps
        self.train = TrainConfig(batch_size=len(x), seed=args.seed)
        torch.manual_seed(stable_seed(self.train.seed, "init"))
        self.model = build(spec).to(device)
        self.defense = create_defense(spec.defense, spec.settings, spec.track)
        self.optimizer, self.own = _optimizers(
            self.model,
            self.defense,
            self.train,
            self.defense.weight_decay(TRACK_WEIGHT_DECAY[spec.track]),
        )
        self.augment = dataset_info(spec.dataset).image_size >= 28  # as train_model decides
        self.epoch = self.train.epochs // 2  # mid-run: TGO's lambda(e) > 0, StoG's rho trained
        self.x, self.y, self.x_dev, self.device = x, y, x.to(device), device
        self.row = Row(spec.defense, self.defense.stochastic(), 0.0, 0.0, 0)

    def to_train(self) -> None:
        self.defense.setup(self.model)  # the neurons record what the losses read

    def train_step(self) -> None:
        _train_epoch(
            self.model,
            self.defense,
            self.optimizer,
            self.own,
            self.x,
            self.y,
            self.train,
            self.augment,
            self.epoch,
            self.device,
        )

    def to_eval(self) -> None:
        for neuron in spiking_neurons(self.model):  # as train_model does before evaluation
            neuron.record_potentials = neuron.record_currents = False
        self.model.eval()

    def infer(self) -> None:
        with torch.no_grad():
            self.model(self.x_dev)


def measure(candidates: list[Candidate], repeats: int, device: torch.device) -> list[Row]:
    """Warm up each, take its memory, then time all of them round-robin ``repeats`` times.

    Interleaving the candidates spreads any drift of the machine's load over all of them
    instead of biasing the ones measured last.
    """
    for c in candidates:
        c.to_train()
        c.train_step()  # warm-up (allocator, cudnn, lazy init)
        c.row.memory_bytes = peak_memory(c.model, c.train_step, device)
        c.to_eval()
        c.infer()
    train_times: list[list[float]] = [[] for _ in candidates]
    infer_times: list[list[float]] = [[] for _ in candidates]
    for _ in range(repeats):
        for c, train_t, infer_t in zip(candidates, train_times, infer_times):
            c.to_train()
            train_t.append(seconds(c.train_step, device))
            c.to_eval()
            infer_t.append(seconds(c.infer, device))
    for c, train_t, infer_t in zip(candidates, train_times, infer_times):
        c.row.train_s, c.row.infer_s = statistics.median(train_t), statistics.median(infer_t)
    return [c.row for c in candidates]


def peak_memory(model: nn.Module, step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes of one training step: CUDA allocator peak, or saved-for-backward on the CPU."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device)
    meter = SavedBytes(model)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        step()
    return meter.peak


def expand(text: str) -> list[str]:
    """``all`` -> every registered defence; vanilla first; duplicates dropped."""
    names: list[str] = ["vanilla"]
    for part in (p.strip() for p in text.split(",")):
        for name in DEFENSES.names() if part.lower() == "all" else [part] if part else []:
            if name not in names:
                names.append(name)
    return names


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "n/a"


def print_table(rows: list[Row], memory_label: str) -> None:
    base = rows[0]
    width = max(12, *(len(r.defense) for r in rows))
    head = (
        f"{'defence':<{width}}  {'train ms':>9} {'ratio':>6}  {'infer ms':>9} {'ratio':>6}  "
        f"{memory_label:>11} {'ratio':>6}  test-time random"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.defense:<{width}}  {1e3 * r.train_s:>9.2f} {ratio(r.train_s, base.train_s):>6}  "
            f"{1e3 * r.infer_s:>9.2f} {ratio(r.infer_s, base.infer_s):>6}  "
            f"{r.memory_bytes / MIB:>11.2f} {ratio(r.memory_bytes, base.memory_bytes):>6}  "
            f"{'yes' if r.stochastic else 'no'}"
        )


def paper_line(
    rows: list[Row], args: argparse.Namespace, timesteps: int, device: torch.device
) -> str:
    paper_train = PAPER_TRAIN_S[1] / PAPER_TRAIN_S[0]
    paper_test = PAPER_TEST_S[1] / PAPER_TEST_S[0]
    paper = (
        f"RandHet Table 8 (SEW-ResNet19, T = 8, GPU): train {paper_train:.2f}x "
        f"({PAPER_TRAIN_S[1]} vs {PAPER_TRAIN_S[0]} s/epoch, +8 %), test {paper_test:.2f}x "
        f"({PAPER_TEST_S[1]} vs {PAPER_TEST_S[0]} s, +25 %)"
    )
    mine = next((r for r in rows if r.defense == "randhet"), None)
    if mine is None:
        return f"randhet not measured; {paper}"
    base = rows[0]
    return (
        f"randhet vs vanilla here ({args.arch}, T = {timesteps}, {args.track} track, "
        f"{device.type}): train {ratio(mine.train_s, base.train_s)}, "
        f"inference {ratio(mine.infer_s, base.infer_s)}; {paper}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--timesteps", type=int, default=4, help="T; 0: the track's T")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--defenses",
        default="all",
        help="'all' and/or comma-separated names or combos, e.g. all,tgo+rat",
    )
    parser.add_argument("--track", default="tgo", choices=sorted(TRACKS))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch; 0 keeps torch's default"
    )
    args = parser.parse_args(argv)
    try:
        if args.repeats < 1 or args.batch < 1:
            raise SnnbenchError("--repeats and --batch must be at least 1")
        device = resolve_device(args.device)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        x, y, source = batch_of(args.dataset, args.batch, args.seed)
        names = expand(args.defenses)
        candidates = [Candidate(n, args, x, y, device) for n in names]
        memory_label = "peak MiB" if device.type == "cuda" else "saved MiB"
        threads = torch.get_num_threads()
        print(
            f"snnbench {snnbench.__version__}, torch {torch.__version__}, device {device}, "
            f"{threads} CPU thread{'s' if threads != 1 else ''}"
        )
        print(
            f"arch {args.arch}, data set {args.dataset}, T = {candidates[0].timesteps}, track "
            f"{args.track}, batch {args.batch}, median of {args.repeats} after 1 warm-up"
        )
        print(f"inputs: {source}")
        print(
            "memory: "
            + (
                "torch.cuda.max_memory_allocated during one training step"
                if device.type == "cuda"
                else "peak saved-for-backward bytes during one training step (not RSS)"
            )
        )
        print()
        rows = measure(candidates, args.repeats, device)
    except SnnbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows, memory_label)
    print()
    print(paper_line(rows, args, candidates[0].timesteps, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
