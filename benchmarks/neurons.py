"""How fast our spiking neurons are: against the memory bound, the naive loop and SpikingJelly.

    python benchmarks/neurons.py [--timesteps 4,8] [--batch 32] [--repeats 7] [--threads N]
        [--allocator-batch 32,128] [--skip-allocator] [--skip-kinds]

Needs SpikingJelly (``pip install -e .[bench]``). Four parts, each on the CPU:

1. **Neuron**: one spiking layer on a CIFAR-sized feature map ``[T*B, 64, 32, 32]``: forward +
   backward wall time, the bytes autograd saves for backward (``saved_tensors_hooks``, summed
   once per storage), and the time as a multiple of the layer's memory-traffic bound: six
   passes over the tensor (read input, write spikes, save u; read gradient, read u, write
   gradient) at the bandwidth of ``torch.add(a, b, out=c)`` over three tensors of its size,
   measured in the same round-robin. Ours is the tgo track's LIF (tet form, k = 0.5, theta = 1,
   hard reset) with the atan surrogate (width 2): ``fused`` (the native kernel where it was
   built, docs/performance.md; the line says which path ran), ``fused-pytorch`` (the PyTorch
   fused loop), ``naive``; SpikingJelly's is ``LIFNode(tau=2, decay_input=False, v_reset=0,
   surrogate ATan(alpha=2), step_mode='m')``, the same neuron: the run checks that both give
   the same spikes. Its CPU path (no Triton, no CUDA) is its own plain-PyTorch multi-step loop.
2. **Every neuron**: each neuron with a fused path (LIF, Noisy-LIF diffusive and escape, Het,
   RandHet, RandHet*, DLIF) as its defence builds it, in channels_last (how the CPU runs
   ``tiny``) and in NCHW (``vgg11`` on the CPU, and where draws need no copy): the fused core's
   forward + input gradient with the native kernel and with the PyTorch loop, each against
   its bound (the six passes plus the passes that read its noise and decays); its random draws
   are made once outside the timing and timed apart (``draw``).
3. **Network**: snnbench's ``tiny`` arch at CIFAR size (32x32x3, 10 classes), placed as
   snnbench places it on the CPU (channels_last, ``runtime.place``): one training step
   (forward, cross-entropy, backward, SGD step), one PGD step (eval mode, forward, input
   gradient, signed step) and one inference forward (eval, no_grad), for ``fused`` (native
   kernel, encoder once), ``fused-per-step`` (first conv + BN on all T copies),
   ``fused-pytorch`` (no native kernel), ``sj`` (every neuron swapped for SpikingJelly's
   LIFNode, same weights, same layout, same spikes, per-step encoder: the model as it ran before
   issue 21 with SpikingJelly's neurons) and ``sj-once`` (SpikingJelly's neurons, encoder once).
4. **Allocator**: the fused training step (smallest T) in fresh subprocesses, without and with
   ``runtime.tune_allocator()`` (glibc mallopt; it cannot be undone inside one process), at
   ``--allocator-batch`` sizes: glibc's dynamic mmap threshold stops at 32 MiB, so the setting
   matters once activations outgrow it (B = 128 here), hardly below.

Every timing is the median of ``--repeats`` runs after one warm-up; the repeats go round-robin
over the variants, so a change in the machine's load hits all alike. Ratios (``N.NNx``) compare
numbers measured side by side in one run: read "fused vs SJ 2.50x" as "SpikingJelly takes 2.5
times as long". Threads: ``--threads``, else one per idle core (``runtime.cpu_threads``); the
number of busy cores measured at start is printed, since other work on the machine slows all
variants and makes absolute numbers move.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's snnbench, not an installed one

import torch  # noqa: E402
from torch import nn  # noqa: E402

import snnbench  # noqa: E402
from snnbench import runtime  # noqa: E402
from snnbench.config import TRACKS, NeuronConfig  # noqa: E402
from snnbench.model import create_model  # noqa: E402
from snnbench.neurons import LIF, native, neuron_factory  # noqa: E402
from snnbench.neurons.fused import Spec, fused_lif  # noqa: E402
from snnbench.neurons.lif import use_neuron_impl  # noqa: E402

MIB = 2**20
ROUNDS = 2
CONFIG = NeuronConfig(surrogate="atan", surrogate_width=2.0)  # tgo track, atan surrogate
SETTINGS = {"surrogate.kind": "atan", "surrogate.width": 2.0}


def spikingjelly():
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        sys.exit("SpikingJelly is missing: pip install -e '.[bench]' (or pip install spikingjelly)")
    return neuron, surrogate


class SJNeuron(nn.Module):
    """SpikingJelly's multi-step LIFNode on our folded ``[T*B, ...]`` layout."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        neuron, surrogate = spikingjelly()
        self.timesteps = timesteps
        self.node = neuron.LIFNode(
            tau=2.0,
            decay_input=False,
            v_threshold=1.0,
            v_reset=0.0,
            surrogate_function=surrogate.ATan(alpha=2.0),
            step_mode="m",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.node.reset()
        return self.node(x.view(self.timesteps, -1, *x.shape[1:])).flatten(0, 1)


def sj_twin(model: nn.Module, timesteps: int) -> nn.Module:
    """A copy of ``model`` with every LIF replaced by SpikingJelly's LIFNode."""
    twin = copy.deepcopy(model)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LIF):
                setattr(parent, name, SJNeuron(timesteps))
    return twin


def saved_bytes(fn: Callable[[], object], skip: tuple[torch.Tensor, ...] = ()) -> int:
    """Bytes autograd saves during ``fn()``, once per storage, ``skip`` (parameters) excluded."""
    skipped = {t.untyped_storage().data_ptr() for t in skip}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skipped:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def medians(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per variant, round-robin, after one warm-up call of each."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def with_impl(impl: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with use_neuron_impl(impl):
            return fn()

    return run


def with_native(on: bool, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with the native kernel allowed (``on``) or switched off (``SNNBENCH_NATIVE=0``)."""

    def run() -> object:
        previous = os.environ.get(native.ENV)
        if not on:
            os.environ[native.ENV] = "0"
        try:
            return fn()
        finally:
            if previous is None:
                os.environ.pop(native.ENV, None)
            else:
                os.environ[native.ENV] = previous

    return run


def copy_pass(like: torch.Tensor) -> Callable[[], object]:
    """``torch.add(a, b, out=c)`` over three tensors the size of ``like``: the measured cost of
    moving ``3 * like.nbytes`` through memory (the bandwidth the bounds use)."""
    a, b, c = torch.randn_like(like), torch.randn_like(like), torch.empty_like(like)
    return lambda: torch.add(a, b, out=c)


def bound_seconds(moved_bytes: float, like: torch.Tensor, add_seconds: float) -> float:
    """Seconds to move ``moved_bytes`` at the bandwidth ``copy_pass(like)`` measured."""
    return add_seconds * moved_bytes / (3 * like.numel() * like.element_size())


def neuron_part(timesteps: int, batch: int, repeats: int) -> None:
    torch.manual_seed(0)
    shape = (64, 32, 32)
    x = 0.8 * torch.randn(timesteps * batch, *shape) + 0.4
    grad = torch.randn_like(x)
    ours = LIF(CONFIG, timesteps, shape)
    theirs = SJNeuron(timesteps)
    with torch.no_grad():
        same = torch.equal(ours(x), theirs(x))

    def step(module: nn.Module) -> Callable[[], object]:
        def run() -> object:
            inp = x.detach().requires_grad_()
            out = module(inp)
            out.backward(grad)
            return inp.grad

        return run

    def forward(module: nn.Module) -> Callable[[], object]:
        return lambda: module(x.detach().requires_grad_())

    variants = {
        "fused": with_impl("fused", step(ours)),
        "fused-pytorch": with_native(False, with_impl("fused", step(ours))),
        "naive": with_impl("naive", step(ours)),
        "sj": step(theirs),
        "add": copy_pass(x),
    }
    memory = {
        "fused": saved_bytes(with_impl("fused", forward(ours))),
        "fused-pytorch": saved_bytes(with_native(False, with_impl("fused", forward(ours)))),
        "naive": saved_bytes(with_impl("naive", forward(ours))),
        "sj": saved_bytes(forward(theirs)),
    }
    times = medians(variants, repeats)
    # six passes over [T*B, ...]: read x, write spikes, write u; read grad, read u, write grad
    bound = bound_seconds(6 * x.numel() * x.element_size(), x, times["add"])
    bandwidth = 3 * x.numel() * x.element_size() / times["add"] / 2**30
    print(
        f"\n[neuron] LIF on [T*B, 64, 32, 32], T={timesteps}, B={batch} "
        f"({x.numel() / 1e6:.1f} M values); same spikes as SJ: {'yes' if same else 'NO'}; "
        f"fused path: {native.status()}"
    )
    print(
        f"  memory bound: 6 passes over {x.numel() * x.element_size() / MIB:.0f} MiB at "
        f"{bandwidth:.1f} GiB/s (torch.add over three such tensors, {1000 * times['add']:.2f} ms, "
        f"measured alongside) = {1000 * bound:.2f} ms"
    )
    print(f"  {'':14}{'fwd+bwd ms':>12}{'x bound':>9}{'saved MiB':>12}")
    for name in memory:
        print(
            f"  {name:14}{1000 * times[name]:12.1f}{times[name] / bound:9.2f}"
            f"{memory[name] / MIB:12.1f}"
        )
    print(
        f"  fused vs SJ: {ratio(times['sj'], times['fused'])} faster, "
        f"{memory['fused'] / memory['sj']:.2f} of its saved memory"
    )
    print(
        f"  fused vs naive: {ratio(times['naive'], times['fused'])} faster, "
        f"{memory['fused'] / memory['naive']:.2f} of its saved memory"
    )


# Every neuron with a fused path, as its defence builds it: (label, kind, options).
NEURON_KINDS = [
    ("lif", "lif", {}),
    ("noisy diffusive", "noisy", {"mode": "diffusive"}),
    ("noisy escape", "noisy", {"mode": "escape"}),
    ("het", "het", {}),
    ("randhet", "randhet", {"per_step": True}),
    ("randhet*", "randhet", {"per_step": False}),
    ("dlif", "dlif", {}),
]


def kinds_part(timesteps: int, batch: int, repeats: int, layout: str) -> None:
    """Each neuron's fused core, forward + input gradient (an attack step's share), against
    its memory bound; the random numbers it draws are drawn once, outside the timing."""
    torch.manual_seed(0)
    shape = (64, 32, 32)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = (0.8 * torch.randn(timesteps * batch, *shape) + 0.4).to(memory_format=memory_format)
    grad = torch.randn_like(x)
    variants: dict[str, Callable[[], object]] = {"add": copy_pass(x)}
    moved: dict[str, float] = {}
    paths: dict[str, str] = {}
    for label, kind, options in NEURON_KINDS:
        config = dataclasses.replace(
            TRACKS["tgo"], kind=kind, surrogate="atan", surrogate_width=2.0
        )
        neuron = neuron_factory(config, timesteps, **options)(shape)
        steps = x.view(timesteps, batch, *shape)
        neuron._held = None if getattr(neuron, "per_step", True) else neuron.draw(steps[0])
        extra = neuron.fused_inputs(steps)
        decay = extra.decay.detach() if isinstance(extra.decay, torch.Tensor) else extra.decay
        gain = None if extra.gain is None else extra.gain.detach()
        spec = Spec(
            convex=config.form == "convex",
            theta=config.theta,
            ge=config.spike_ge,
            detach_reset=config.detach_reset,
            surrogate=neuron.surrogate,
            decay_per_step=extra.decay_per_step,
            escape=extra.escape,
        )
        paths[label] = (
            "native" if native.covers(steps, decay, gain, extra.noise, spec) else "pytorch"
        )

        def run(decay=decay, gain=gain, noise=extra.noise, spec=spec) -> object:
            inp = x.detach().view(timesteps, batch, *shape).requires_grad_()
            fused_lif(inp, decay, gain, noise, spec).backward(grad.view_as(inp))
            return inp.grad

        variants[label] = run
        variants[label + " (pytorch)"] = with_native(False, run)
        variants[label + " (draw)"] = lambda neuron=neuron, steps=steps: neuron.fused_inputs(steps)
        # six passes over x, plus what reads the noise and the decays (forward, and backward
        # where it needs them)
        extra_bytes = 0
        if extra.noise is not None:
            extra_bytes += (2 if extra.escape else 1) * extra.noise.numel()
        if isinstance(decay, torch.Tensor):
            extra_bytes += 2 * decay.numel()
        moved[label] = (6 * x.numel() + extra_bytes) * x.element_size()
    times = medians(variants, repeats)
    print(
        f"\n[neurons] every fused neuron core, forward + input gradient, [T*B, 64, 32, 32], "
        f"T={timesteps}, B={batch}, {layout}; bound = its passes at the bandwidth of "
        f"torch.add measured alongside ({1000 * times['add']:.2f} ms for three tensors)"
    )
    print(
        f"  {'':16}{'path':>8}{'bound ms':>10}{'ours ms':>9}{'x bound':>9}"
        f"{'pytorch ms':>12}{'x bound':>9}{'draw ms':>9}"
    )
    for label, _, _ in NEURON_KINDS:
        bound = bound_seconds(moved[label], x, times["add"])
        ours, plain = times[label], times[label + " (pytorch)"]
        print(
            f"  {label:16}{paths[label]:>8}{1000 * bound:10.2f}{1000 * ours:9.2f}"
            f"{ours / bound:9.2f}{1000 * plain:12.2f}{plain / bound:9.2f}"
            f"{1000 * times[label + ' (draw)']:9.2f}"
        )
    print(
        "  ours: the fused core with the native kernel where it runs (path; in channels_last "
        "it reads the row-major draws in place); pytorch: the PyTorch fused loop; draw: "
        "the neuron's fused_inputs (its random numbers, decays, gains), outside both"
    )


def network(timesteps: int) -> nn.Module:
    """The tiny arch as snnbench runs it on the CPU (``runtime.place``: channels_last)."""
    torch.manual_seed(0)
    return runtime.place(
        create_model(
            "vanilla",
            arch="tiny",
            dataset="cifar10",
            timesteps=timesteps,
            track="tgo",
            settings=SETTINGS,
        ),
        "cpu",
    )


def train_step(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[], object]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def run() -> object:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return run


def inference(model: nn.Module, images: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        model.eval()
        with torch.no_grad():
            return model(images)

    return run


def data(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (
        torch.rand(batch, 3, 32, 32, generator=generator),
        torch.randint(0, 10, (batch,), generator=generator),
    )


def pgd_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], object]:
    """One PGD step as the attacks run it: eval mode, forward, input gradient, signed step."""
    loss_fn = nn.CrossEntropyLoss()

    def run() -> object:
        model.eval()
        x = images.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss_fn(model(x), labels), x)
        return (x.detach() + 2 / 255 * grad.sign()).clamp_(0, 1)

    return run


def network_part(timesteps: int, batch: int, repeats: int) -> None:
    ours = network(timesteps)
    theirs = sj_twin(ours, timesteps)  # same weights and layout, SJ's neurons
    theirs.encode_once = False  # the model as it ran before: conv per step
    images, labels = data(batch)
    with torch.no_grad():
        same = torch.equal(ours.eval()(images), theirs.eval()(images))
    sj_once = copy.deepcopy(theirs)
    sj_once.encode_once = True
    per_step = copy.deepcopy(ours)
    per_step.encode_once = False
    # Separate copies per variant: each trains its own weights (same start).
    models = {
        "fused": ours,
        "fused-per-step": per_step,
        "fused-pytorch": copy.deepcopy(ours),
        "sj": theirs,
        "sj-once": sj_once,
    }

    def wrapped(name: str, fn: Callable[[], object]) -> Callable[[], object]:
        return with_native(False, fn) if name == "fused-pytorch" else fn

    parts = {"train": train_step, "pgd": pgd_step}
    variants = {
        (part, name): wrapped(name, make(models[name], images, labels))
        for part, make in parts.items()
        for name in models
    }
    variants.update(
        {("infer", name): wrapped(name, inference(models[name], images)) for name in models}
    )
    memory = {}
    for name, model in models.items():
        model.train()
        run = wrapped(name, lambda m=model: m(images))
        memory[name] = saved_bytes(run, tuple(model.parameters()) + tuple(model.buffers()))
    times = medians(variants, repeats)
    print(
        f"\n[network] tiny arch, CIFAR size 32x32x3, T={timesteps}, B={batch}, channels_last; "
        f"sj: SpikingJelly's LIFNode in our model on the per-step path (first conv + BN on all "
        f"T copies, as before encode-once); same logits with SJ neurons: "
        f"{'yes' if same else 'NO'}"
    )
    print(f"  {'':15}{'train ms':>10}{'pgd ms':>9}{'infer ms':>10}{'saved MiB':>11}")
    for name in models:
        print(
            f"  {name:15}{1000 * times['train', name]:10.1f}{1000 * times['pgd', name]:9.1f}"
            f"{1000 * times['infer', name]:10.1f}{memory[name] / MIB:11.1f}"
        )

    def versus(other: str) -> str:
        return ", ".join(
            f"{part} {ratio(times[part, other], times[part, 'fused'])}"
            for part in ("train", "pgd", "infer")
        )

    print(f"  fused vs sj: {versus('sj')} faster (targets: train and pgd >= 2.0x)")
    print(f"  fused vs sj-once (SJ neurons, encoder once too): {versus('sj-once')}")
    print(f"  encode once (fused vs fused-per-step): {versus('fused-per-step')}")
    print(f"  native kernel (fused vs fused-pytorch): {versus('fused-pytorch')}")


def child_train(timesteps: int, batch: int, repeats: int, tune: bool) -> None:
    """One subprocess of part 3: prints the median fused train step in seconds as JSON."""
    tuned = runtime.tune_allocator() if tune else False
    images, labels = data(batch)
    step = train_step(network(timesteps), images, labels)
    seconds = medians({"step": step}, repeats)["step"]
    print(json.dumps({"seconds": seconds, "tuned": tuned}))


def allocator_part(args: argparse.Namespace, timesteps: int) -> None:
    print(
        f"\n[allocator] fused train step, tiny arch, T={timesteps}, one fresh process per "
        f"measurement, {ROUNDS} rounds alternating (best median of each kept)"
    )
    for batch in args.allocator_batch:
        results: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(ROUNDS):
            for tune in (False, True):
                command = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--child-train",
                    "--timesteps",
                    str(timesteps),
                    "--batch",
                    str(batch),
                    "--repeats",
                    str(args.repeats),
                    "--threads",
                    str(args.threads),
                    *(["--tune"] if tune else []),
                ]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                results[tune].append(json.loads(done.stdout.strip().splitlines()[-1]))
        before = min(r["seconds"] for r in results[False])
        after = min(r["seconds"] for r in results[True])
        biggest = timesteps * batch * 16 * 32 * 32 * 4 / MIB  # first conv's output
        print(
            f"  B={batch:<4} (largest activation {biggest:.0f} MiB): default glibc "
            f"{1000 * before:.1f} ms, tune_allocator() {1000 * after:.1f} ms (set: "
            f"{results[True][0]['tuned']}): {ratio(before, after)} faster"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="4,8", help="comma-separated T values")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: one per idle core)"
    )
    parser.add_argument(
        "--allocator-batch", default="32,128", help="comma-separated batch sizes for part 3"
    )
    parser.add_argument(
        "--skip-allocator",
        action="store_true",
        help="leave out part 4 (the allocator subprocesses)",
    )
    parser.add_argument(
        "--skip-kinds",
        action="store_true",
        help="leave out part 2 (every neuron against its bound)",
    )
    parser.add_argument("--child-train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tune", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = [int(t) for t in args.timesteps.split(",")]
    args.allocator_batch = [int(b) for b in args.allocator_batch.split(",")]
    if args.child_train:
        torch.set_num_threads(args.threads)
        child_train(steps[0], args.batch, args.repeats, args.tune)
        return
    busy = runtime.busy_cores(1.0)
    args.threads = runtime.cpu_threads(args.threads)
    torch.set_num_threads(args.threads)
    tuned = runtime.tune_allocator()
    spikingjelly()
    print(
        f"snnbench {snnbench.__version__} from {Path(snnbench.__file__).parent}; torch "
        f"{torch.__version__}; spikingjelly {metadata.version('spikingjelly')}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s); busy cores at start: {busy:.1f}; allocator tuned: "
        f"{tuned}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(
        f"Medians of {args.repeats} round-robin repeats after a warm-up; every ratio compares "
        "variants measured side by side in this one run (other load on the machine slows all "
        "alike; absolute times are not comparable across runs)."
    )
    for timesteps in steps:
        neuron_part(timesteps, args.batch, args.repeats)
    if not args.skip_kinds:
        for layout in ("channels_last", "nchw"):
            for timesteps in steps:
                kinds_part(timesteps, args.batch, args.repeats, layout)
    for timesteps in steps:
        network_part(timesteps, args.batch, args.repeats)
    if not args.skip_allocator:
        allocator_part(args, min(steps))


if __name__ == "__main__":
    main()
