"""How fast our spiking neurons are: fused loop vs naive loop vs SpikingJelly, side by side.

    python benchmarks/neurons.py [--timesteps 4,8] [--batch 32] [--repeats 7] [--threads N]
        [--allocator-batch 32,128] [--skip-allocator]

Needs SpikingJelly (``pip install -e .[bench]``). Three parts, each on the CPU:

1. **Neuron**: one spiking layer on a CIFAR-sized feature map ``[T*B, 64, 32, 32]``: forward +
   backward wall time, and the bytes autograd saves for backward (``saved_tensors_hooks``,
   summed once per storage). Ours is the tgo track's LIF (tet form, k = 0.5, theta = 1, hard
   reset) with the atan surrogate (width 2); SpikingJelly's is ``LIFNode(tau=2,
   decay_input=False, v_reset=0, surrogate ATan(alpha=2), step_mode='m')``, the same neuron:
   the run checks that both give the same spikes. Its CPU path (no Triton, no CUDA) is its own
   plain-PyTorch multi-step loop.
2. **Network**: snnbench's ``tiny`` arch at CIFAR size (32x32x3, 10 classes), placed as
   snnbench places it on the CPU (channels_last, ``runtime.place``): one training step
   (forward, cross-entropy, backward, SGD step) and one inference forward (eval, no_grad), with
   our neurons (fused, naive) and with every neuron swapped for SpikingJelly's LIFNode (same
   weights, same layout, same spikes); and the fused model in NCHW, for the layout's share.
3. **Allocator**: the fused training step (smallest T) in fresh subprocesses, without and with
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
from snnbench.config import NeuronConfig  # noqa: E402
from snnbench.model import create_model  # noqa: E402
from snnbench.neurons import LIF  # noqa: E402
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
        "naive": with_impl("naive", step(ours)),
        "sj": step(theirs),
    }
    memory = {
        "fused": saved_bytes(with_impl("fused", forward(ours))),
        "naive": saved_bytes(with_impl("naive", forward(ours))),
        "sj": saved_bytes(forward(theirs)),
    }
    times = medians(variants, repeats)
    print(
        f"\n[neuron] LIF on [T*B, 64, 32, 32], T={timesteps}, B={batch} "
        f"({x.numel() / 1e6:.1f} M values); same spikes as SJ: {'yes' if same else 'NO'}"
    )
    print(f"  {'':8}{'fwd+bwd ms':>12}{'saved MiB':>12}")
    for name in variants:
        print(f"  {name:8}{1000 * times[name]:12.1f}{memory[name] / MIB:12.1f}")
    print(
        f"  fused vs SJ: {ratio(times['sj'], times['fused'])} faster, "
        f"{memory['fused'] / memory['sj']:.2f} of its saved memory"
    )
    print(
        f"  fused vs naive: {ratio(times['naive'], times['fused'])} faster, "
        f"{memory['fused'] / memory['naive']:.2f} of its saved memory"
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


def network_part(timesteps: int, batch: int, repeats: int) -> None:
    ours = network(timesteps)
    theirs = sj_twin(ours, timesteps)  # same weights and layout, SJ's neurons
    images, labels = data(batch)
    with torch.no_grad():
        same = torch.equal(ours.eval()(images), theirs.eval()(images))
    nchw = copy.deepcopy(ours).to(memory_format=torch.contiguous_format)
    # Separate copies per variant: each trains its own weights (same start).
    models = {"fused": ours, "naive": copy.deepcopy(ours), "sj": theirs, "fused-nchw": nchw}
    impl = {"fused": "fused", "naive": "naive", "fused-nchw": "fused"}
    train = {
        name: with_impl(impl[name], train_step(models[name], images, labels))
        if name in impl
        else train_step(models[name], images, labels)
        for name in models
    }
    infer = {
        name: with_impl(impl[name], inference(models[name], images))
        if name in impl
        else inference(models[name], images)
        for name in models
    }
    memory = {}
    for name, model in models.items():
        model.train()

        def forward(m=model):
            return m(images)

        run = with_impl(impl[name], forward) if name in impl else forward
        memory[name] = saved_bytes(run, tuple(model.parameters()) + tuple(model.buffers()))
    train_s = medians(train, repeats)
    infer_s = medians(infer, repeats)
    print(
        f"\n[network] tiny arch, CIFAR size 32x32x3, T={timesteps}, B={batch}, channels_last "
        f"(fused-nchw: the same in NCHW); same logits with SJ neurons: "
        f"{'yes' if same else 'NO'}"
    )
    print(f"  {'':11}{'train ms':>10}{'infer ms':>10}{'saved MiB':>11}")
    for name in models:
        print(
            f"  {name:11}{1000 * train_s[name]:10.1f}{1000 * infer_s[name]:10.1f}"
            f"{memory[name] / MIB:11.1f}"
        )
    print(
        f"  fused vs SJ: train {ratio(train_s['sj'], train_s['fused'])}, "
        f"infer {ratio(infer_s['sj'], infer_s['fused'])} faster, "
        f"{memory['fused'] / memory['sj']:.2f} of its saved memory"
    )
    print(
        f"  fused vs naive: train {ratio(train_s['naive'], train_s['fused'])}, "
        f"infer {ratio(infer_s['naive'], infer_s['fused'])} faster"
    )
    print(
        f"  channels_last vs NCHW (fused): train "
        f"{ratio(train_s['fused-nchw'], train_s['fused'])}, "
        f"infer {ratio(infer_s['fused-nchw'], infer_s['fused'])} faster"
    )


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
        "--skip-allocator", action="store_true", help="leave out part 3 (the two subprocesses)"
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
    for timesteps in steps:
        network_part(timesteps, args.batch, args.repeats)
    if not args.skip_allocator:
        allocator_part(args, min(steps))


if __name__ == "__main__":
    main()
