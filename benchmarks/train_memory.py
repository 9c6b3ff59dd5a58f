"""Memory of one WRN-16-4 training step at CIFAR size, T=4, batch 128 (issue 10, item 6).

    python benchmarks/train_memory.py [--arch wrn16] [--batch 128] [--timesteps 4] [--device auto]

For our fused neurons and the naive loop (``SNNBENCH_NEURON_IMPL``), side by side in one run:

- the bytes autograd saves for backward (``saved_tensors_hooks``, summed once per storage):
  the activation memory of the step, the same on any device in fp32 (bf16 autocast on CUDA
  stores most of them in half the bytes);
- weights + gradients + SGD momentum;
- on CUDA, the measured peak (``torch.cuda.max_memory_allocated``) of a real step under the
  training loop's bf16 autocast; on the CPU, the growth of the process's peak resident memory
  over the step (``ru_maxrss``), an upper bound that includes the allocator's slack.

The target: the step fits in 24 GiB of GPU memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
import torch.nn.functional as F

from snnbench import create_model
from snnbench.neurons.lif import use_neuron_impl
from snnbench.runtime import autocast, resolve_device, tune_allocator

GIB = 1024**3


def saved_bytes(step) -> int:
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(backward=False)
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="wrn16")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    tune_allocator()
    device = resolve_device(args.device)
    print(
        f"{args.arch} on {args.data} shapes, T={args.timesteps}, batch {args.batch}, "
        f"device {device.type}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    model = (
        create_model("vanilla", arch=args.arch, dataset=args.data, timesteps=args.timesteps)
        .to(device)
        .train()
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def step(backward: bool = True) -> None:
        with autocast(device, device.type == "cuda"):
            loss = F.cross_entropy(model(x), y)
        if backward:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    print(
        f"weights + grads + momentum: {3 * params / GIB:.3f} GiB ({params / 4e6:.2f} M parameters)"
    )
    for impl in ("fused", "naive"):
        with use_neuron_impl(impl):
            activations = saved_bytes(step)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                step()
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                peak = f"measured CUDA peak {torch.cuda.max_memory_allocated() / GIB:.2f} GiB"
            else:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                start = time.perf_counter()
                step()
                seconds = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                peak = f"process peak RSS grew {(after - before) / GIB:.2f} GiB"
        print(
            f"[{impl}] saved activations {activations / GIB:.2f} GiB (fp32 forward); {peak}; "
            f"step {seconds:.2f} s"
        )
    print(
        f"(threads {torch.get_num_threads()}, pid {os.getpid()}; the first variant's RSS growth "
        "includes the process's first large allocations)"
    )


if __name__ == "__main__":
    main()
