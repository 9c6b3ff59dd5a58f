"""Expected training hours of the zoo recipes, from a measured training step (issue 4, item 5).

    python benchmarks/recipe_cost.py [RECIPE ...] [--device auto|cpu|cuda] [--steps 2]
        [--warmup 1] [--batch 0] [--threads 0] [--assume-tflops 10,50] [--write]

For each recipe (default: the five paper recipes) and each of its models, one training step is
run exactly as ``snnbench train`` runs it: the same ``resolve`` + ``build``, the defence's
``setup`` and optimisers, and ``snnbench.train.train_step`` itself (the defence's inputs such as
AT's PGD or RAT's FGSM, the losses, backward, every optimiser step, ``after_step``; bf16
autocast on CUDA, fp32 on the CPU). Inputs are random [0,1] data of the data set's shape (CIFAR
3x32x32, CIFAR10-DVS frames [10,2,48,48]) and random labels: no data set is read. Models that
build the same network with the same defence, settings, classes and batch are measured once.

- **s/step**: the median of ``--steps`` timed steps after ``--warmup`` untimed ones (the first
  warm-up step is the FLOP-counting one; ``--warmup 0`` times that step itself); CUDA
  synchronised around each step.
- **s/epoch** = s/step x ceil(train size / batch) (CIFAR 50,000 images; CIFAR10-DVS 9,000, its
  9:1 train split). Data loading and augmentation are not timed.
- **hours** = s/epoch x the model's epochs / 3600, summed over the recipe's trainings: every
  model once per training seed (the TGO recipes' ``seeds = [0, 1, 2]`` cost 3x one seed).
- **TFLOP/epoch**: the whole step (attack steps included) counted by
  ``torch.utils.flop_counter.FlopCounterMode``, which counts matmuls and convolutions only (the
  neurons' elementwise work is not counted), times the steps per epoch.

``--batch N`` below the recipe's batch counts the FLOPs at N and 2N and extrapolates them to the
recipe's batch (exact: every counted op is per sample or, like RAT's retraction, per step) and
times the steps at 2N, scaling the seconds in proportion (an assumption, and an overestimate
where a step has fixed costs; the output says so). Defaults: on CUDA the recipe's batch, 2 steps
after 1 warm-up; on the CPU ``--batch 1 --steps 1 --warmup 0``, which keeps the five recipes
(82 distinct steps) under 10 minutes on 2 cores.

``--write`` rewrites each recipe's ``# Expected GPU hours`` comment paragraph (and nothing else).
On CUDA the paragraph states the measured GPU hours, the GPU and the date. On the CPU it says that
no GPU was measured, gives the CPU measurement and a GPU *estimate*: the counted FLOPs over an
assumed sustained throughput range (``--assume-tflops``, in TFLOP/s), and says how to replace it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import torch
from torch.utils.flop_counter import FlopCounterMode

import snnbench
from snnbench.config import TRACK_WEIGHT_DECAY, ModelConfig, TrainConfig, model_name
from snnbench.data import dataset_info, load_dataset
from snnbench.defenses import create_defense
from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write, stable_seed
from snnbench.model import build, resolve
from snnbench.recipe import Recipe, load_recipe, parse_recipe, recipe_path
from snnbench.runtime import cpu_threads, resolve_device, tune_allocator
from snnbench.train import _optimizers, train_step

DEFAULT_RECIPES = (
    "cifar10-tgo",
    "cifar100-tgo",
    "cifar10-randhet",
    "cifar100-randhet",
    "dvs-cifar10-tgo",
)
# Training-split sizes; CIFAR10-DVS: 900 of each class's 1,000 recordings (snnbench.events).
TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "dvs-cifar10": 9_000}
MARKER = "# Expected GPU hours"


@dataclass(frozen=True)
class Cost:
    """One training step at the recipe's batch (scaled from ``measured_batch`` if smaller)."""

    seconds: float
    flops: float
    measured_batch: int  # the batch timed
    counted_at: tuple[int, ...]  # the batches whose FLOPs were counted


@dataclass(frozen=True)
class Row:
    model: str
    cost: Cost
    steps_per_epoch: int
    epochs: int

    @property
    def epoch_s(self) -> float:
        return self.cost.seconds * self.steps_per_epoch

    @property
    def hours(self) -> float:
        return self.epoch_s * self.epochs / 3600

    @property
    def epoch_tflop(self) -> float:
        return self.cost.flops * self.steps_per_epoch / 1e12


class _NoModuleTracking:
    """FlopCounterMode's per-module tracker hooks autograd in a way that breaks the
    ``torch.autograd.grad`` inside AT's PGD; only the total is needed, so count under "Global"."""

    parents = {"Global"}

    def __enter__(self) -> "_NoModuleTracking":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    return counter


def train_size(dataset: str) -> int:
    if dataset in TRAIN_SIZE:
        return TRAIN_SIZE[dataset]
    return len(load_dataset(dataset, "train")[1])  # embedded data (digits): cheap to read


def random_batch(dataset: str, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(dataset)
    shape = (info.channels, info.image_size, info.image_size)
    if info.frames:
        shape = (info.frames, *shape)
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.rand((size, *shape), generator=generator),
        torch.randint(info.num_classes, (size,), generator=generator),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_cost(
    config: ModelConfig,
    train: TrainConfig,
    device: torch.device,
    steps: int = 2,
    warmup: int = 1,
    batch: int | None = None,
) -> Cost:
    """Seconds and FLOPs of one training step of ``config`` at the recipe's batch, built and run
    as ``train_model`` does. ``batch`` smaller than the recipe's: the FLOPs are counted at
    ``batch`` and ``2 * batch`` and extrapolated (exact: each counted op is either per sample or,
    like RAT's retraction, independent of the batch); the seconds are timed at ``2 * batch`` and
    scaled in proportion (an assumption)."""
    full = train.batch_size
    small = min(batch or full, full)
    spec = resolve(config)
    torch.manual_seed(stable_seed(train.seed, "init"))
    model = build(spec).to(device)
    defense = create_defense(spec.defense, spec.settings, spec.track)
    defense.setup(model)
    decay = (
        train.weight_decay
        if train.weight_decay is not None
        else defense.weight_decay(TRACK_WEIGHT_DECAY[spec.track])
    )
    optimizer, own = _optimizers(model, defense, train, decay)
    epoch = train.epochs // 2  # mid-run: TGO's lambda(e) > 0, StoG's rho in training

    def timed(size: int) -> float:
        x, y = random_batch(spec.dataset, size, train.seed)
        x, y = x.to(device), y.to(device)
        _sync(device)
        start = time.perf_counter()
        train_step(model, defense, optimizer, own, x, y, train, epoch, device)
        _sync(device)
        return time.perf_counter() - start

    def counted(size: int) -> tuple[float, float]:
        counter = flop_counter()
        with counter:
            seconds = timed(size)
        return seconds, float(counter.get_total_flops())

    first, flops = counted(small)  # also the first warm-up (lazy init, allocator, cudnn)
    size = small
    if small < full:  # a second point: the batch-independent part of the FLOPs
        size = min(2 * small, full)
        first, flops_2 = counted(size)
        flops = flops + (flops_2 - flops) / (size - small) * (full - small)
    # warmup 0: the last counted step is also the timed one (its first-call set-up and the
    # counter's dispatch overhead included: an overestimate)
    times = [first] if warmup == 0 else []
    for _ in range(warmup - 1):
        timed(size)
    while len(times) < max(1, steps):
        times.append(timed(size))
    return Cost(statistics.median(times) * full / size, flops, size, tuple(sorted({small, size})))


def _key(config: ModelConfig, train: TrainConfig, batch: int | None) -> str:
    """What decides a step's cost: the resolved network and defence, the input and the batch."""
    spec = resolve(config)
    info = dataset_info(spec.dataset)
    shape = (info.frames, info.channels, info.image_size, info.image_size, info.num_classes)
    fields = {
        **spec.to_dict(),
        "dataset": shape,
        "batch": (train.batch_size, batch),
        "decay": train.weight_decay,
    }
    return repr(sorted((k, repr(v)) for k, v in fields.items()))


def recipe_rows(
    recipe: Recipe,
    device: torch.device,
    steps: int,
    warmup: int,
    batch: int | None,
    cache: dict[str, Cost],
    log=print,
) -> list[Row]:
    rows = []
    for config, train in recipe.models:
        name = config.name or model_name(config.defense, config.arch, config.dataset)
        key = _key(config, train, batch)
        if key not in cache:
            start = time.perf_counter()
            cache[key] = step_cost(config, train, device, steps, warmup, batch)
            log(
                f"  {name}: {cache[key].seconds:.3f} s/step "
                f"({time.perf_counter() - start:.1f} s to measure)"
            )
        per_epoch = math.ceil(train_size(recipe.dataset) / train.batch_size)
        rows.append(Row(name, cache[key], per_epoch, train.epochs))
    return rows


def table(recipe: Recipe, rows: list[Row]) -> str:
    width = max(len("model"), *(len(r.model) for r in rows))
    batch, full = rows[0].cost.measured_batch, recipe.models[0][1].batch_size
    lines = [
        f"{recipe.name}: {len(rows)} models, batch {full}"
        + (f" (timed at batch {batch}, scaled)" if batch < full else ""),
        f"| {'model':<{width}} |    s/step |   s/epoch |    hours | TFLOP/epoch |",
        f"|{'-' * (width + 2)}|-----------|-----------|----------|-------------|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model:<{width}} | {r.cost.seconds:9.3f} | {r.epoch_s:9.1f} | "
            f"{r.hours:8.1f} | {r.epoch_tflop:11.1f} |"
        )
    lines.append(
        f"| {'total':<{width}} | {'':9} | {'':9} | {sum(r.hours for r in rows):8.1f} | {'':11} |"
    )
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}, "
        f"torch {torch.__version__}"
    )


def hours_paragraph(
    recipe: Recipe,
    rows: list[Row],
    device: torch.device,
    steps: int,
    warmup: int,
    assume: tuple[float, float],
    today: str,
) -> list[str]:
    """The recipe's ``# Expected GPU hours`` comment lines (wrapped at 100 characters)."""
    total = sum(r.hours for r in rows)
    batch, full = rows[0].cost.measured_batch, recipe.models[0][1].batch_size
    counted = rows[0].cost.counted_at
    timing = (
        f"median of {steps} steps after {warmup} warm-up"
        if warmup
        else f"{steps} step{'s' if steps > 1 else ''}"
        + (f" after one at batch {counted[0]}" if len(counted) > 1 else "")
        + ", no other warm-up (the FLOP-counted step timed: an overestimate)"
    )
    how = (
        f"{timing}; random inputs of the data set's shape at batch {batch}"
        + (
            f", seconds scaled x{full / batch:g} to batch {full} (ASSUMED proportional to the "
            "batch: an overestimate where per-step costs are fixed); FLOPs counted at batches "
            f"{' and '.join(map(str, counted))} and extrapolated (exact for the counted ops)"
            if batch < full
            else ""
        )
        + f"; s/epoch = s/step x {rows[0].steps_per_epoch} steps; hours = s/epoch x epochs, "
        f"summed over the {len(rows)} trainings ({len(recipe.seeds)} seed"
        f"{'s' if len(recipe.seeds) > 1 else ''} per model)"
    )
    if device.type == "cuda":
        text = (
            f"{MARKER}: {_num(total)} (measured {today} on {machine(device)}, bf16 autocast; "
            f"{how}). `python benchmarks/recipe_cost.py --write` on a GPU remeasures."
        )
    else:
        tflop = sum(r.epoch_tflop * r.epochs for r in rows)
        low, high = tflop / assume[1] / 3600, tflop / assume[0] / 3600
        first = rows[0]
        text = (
            f"{MARKER}: no GPU was measured (none was available). GPU ESTIMATE "
            f"{_num(low)}-{_num(high)} hours = {tflop:.3g} TFLOP (matmuls and convolutions "
            f"of every training step, attack steps included, counted by torch's "
            f"FlopCounterMode) at an ASSUMED sustained {assume[0]:g}-{assume[1]:g} TFLOP/s "
            f"bf16: an assumption, not a measurement. CPU measurement ({today}, "
            f"{machine(device)}; {how}): {first.model} {_num(first.epoch_s)} s/epoch, all "
            f"models {_num(total)} CPU hours. To replace this estimate with a measurement, "
            "run `python benchmarks/recipe_cost.py --write` on the GPU."
        )
    return wrap(text)


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def wrap(text: str, width: int = 100) -> list[str]:
    lines, line = [], ""
    for word in re.findall(r"`[^`]*`\S*|\S+", text):  # a `command` stays on one line
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#  "
        line = f"{line} {word}" if line else word
    return [*lines, line]


def rewrite(text: str, paragraph: list[str]) -> str:
    """``text`` with its ``# Expected GPU hours`` paragraph (that line and the comment lines after
    it, up to the first non-comment or bare ``#`` line) replaced; added at the header's end if
    absent. Every other line is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(MARKER)), None)
    if start is None:  # no paragraph yet: after the leading comment block
        start = end = next(
            (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines)
        )
    else:
        end = start + 1
        while (
            end < len(lines)
            and re.match(r"#\s*\S", lines[end])
            and not lines[end].startswith(MARKER)
        ):
            end += 1
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    return "".join([*lines[:start], *(p + newline for p in paragraph), *lines[end:]])


def write_paragraph(path: Path, paragraph: list[str]) -> None:
    """Rewrite the recipe file's hours paragraph; refuse (file untouched) if the result is no
    longer a valid recipe."""
    text = rewrite(path.read_bytes().decode("utf-8"), paragraph)  # bytes: keep line endings
    parse_recipe(tomllib.loads(text), path, text)
    atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def _path(ref: str) -> Path:
    """A recipe name means this checkout's ``zoo/`` first (what ``--write`` should edit), then
    the packaged zoo."""
    local = Path(__file__).resolve().parent.parent / "zoo" / f"{ref}.toml"
    return local if not Path(ref).is_file() and local.is_file() else recipe_path(ref)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "recipes",
        nargs="*",
        default=list(DEFAULT_RECIPES),
        help="recipe names or paths (default: the five paper recipes)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per model, median (default: 2 on CUDA, 1 on the CPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps first, the FLOP-counted one included; 0: the counted "
        "step is timed (default: 1 on CUDA, 0 on the CPU)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="measure at this batch and scale to the recipe's; 0: the recipe's "
        "(default: the recipe's on CUDA, 1 on the CPU)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads; 0: one per idle core, as the CLI"
    )
    parser.add_argument(
        "--assume-tflops",
        default="10,50",
        help="CPU runs: the ASSUMED sustained GPU TFLOP/s range, LOW,HIGH",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="rewrite each recipe's '# Expected GPU hours' comment lines",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        gpu = device.type == "cuda"
        # CPU defaults: a SEW-ResNet19 step at T = 8 takes 2-3 s per image on 2 cores, so the
        # recipe batch (or two steps) cannot fit the five recipes into a run of minutes
        steps = args.steps if args.steps is not None else 2 if gpu else 1
        warmup = args.warmup if args.warmup is not None else 1 if gpu else 0
        batch = args.batch if args.batch is not None else 0 if gpu else 1
        if steps < 1 or warmup < 0 or batch < 0:
            raise SnnbenchError("--steps must be at least 1, --warmup and --batch at least 0")
        assume = tuple(float(v) for v in args.assume_tflops.split(","))
        if len(assume) != 2 or not 0 < assume[0] <= assume[1]:
            raise SnnbenchError("--assume-tflops takes LOW,HIGH with 0 < LOW <= HIGH")
        tune_allocator()
        torch.set_num_threads(cpu_threads(args.threads or None))  # as the CLI trains
        today = datetime.date.today().isoformat()
        print(
            f"snnbench {snnbench.__version__}; {device}: {machine(device)}; {today}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        cache: dict[str, Cost] = {}
        start = time.perf_counter()
        for ref in args.recipes:
            path = _path(ref)
            recipe = load_recipe(path)
            print(f"{recipe.name} ({path})")
            rows = recipe_rows(recipe, device, steps, warmup, batch or None, cache)
            print(table(recipe, rows))
            paragraph = hours_paragraph(recipe, rows, device, steps, warmup, assume, today)
            print("\n".join(paragraph) + "\n")
            if args.write:
                write_paragraph(path, paragraph)
                print(f"wrote {path}\n")
        print(f"measured {len(cache)} distinct steps in {time.perf_counter() - start:.0f} s")
    except SnnbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
