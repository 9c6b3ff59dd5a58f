"""Where channels_last pays: each arch's training step and inference in NCHW and channels_last.

    python benchmarks/layout.py [--archs tiny:digits:128:4,vgg11:cifar10:16:4,...]
        [--repeats 3] [--threads N] [--device cpu|cuda]

Each entry is ``ARCH:DATASET:BATCH:T``. For each, one vanilla model in both layouts (the same
weights): a training step (train mode, cross-entropy, backward) and an inference forward (eval,
no_grad), medians of ``--repeats`` round-robin runs after a warm-up, and the largest logit
difference between the layouts (the layout moves strides, not values). The ratios, measured side
by side, are what each arch's ``channels_last=`` registration rests on (``runtime.place``); the
printed ``declared`` column says what the registry does now on this device type.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from snnbench import runtime
from snnbench.archs.registry import ARCHS
from snnbench.data import dataset_info
from snnbench.model import create_model

from neurons import medians  # benchmarks/neurons.py: round-robin medians after a warm-up

DEFAULT = (
    "tiny:digits:128:4,tiny:cifar10:32:4,vgg11:cifar10:16:4,wrn16:cifar10:16:4,"
    "sew-resnet19:cifar10:8:8"
)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    return run


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        model.eval()
        with torch.no_grad():
            out = model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = runtime.resolve_device(args.device)
    torch.set_num_threads(runtime.cpu_threads(args.threads))
    runtime.tune_allocator()
    print(
        f"device {device}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(
        f"{'arch':14}{'data':9}{'B':>4}{'T':>3}{'train NCHW':>12}{'train CL':>10}{'ratio':>7}"
        f"{'infer NCHW':>12}{'infer CL':>10}{'ratio':>7}{'max diff':>10}  declared"
    )
    for entry in args.archs.split(","):
        arch, data, batch, timesteps = entry.split(":")
        info = dataset_info(data)
        torch.manual_seed(0)
        plain = create_model("vanilla", arch=arch, dataset=data, timesteps=int(timesteps)).to(
            device
        )
        nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        x = torch.rand(int(batch), info.channels, info.image_size, info.image_size, device=device)
        y = torch.randint(0, info.num_classes, (int(batch),), device=device)
        diff = (inference(plain, x)() - inference(nhwc, x)()).abs().max().item()
        train = medians(
            {"nchw": train_step(plain, x, y), "cl": train_step(nhwc, x, y)}, args.repeats
        )
        infer = medians({"nchw": inference(plain, x), "cl": inference(nhwc, x)}, args.repeats)
        declared = device.type in ARCHS.entry(arch).extra.get("channels_last", ())
        print(
            f"{arch:14}{data:9}{batch:>4}{timesteps:>3}{1e3 * train['nchw']:10.0f}ms"
            f"{1e3 * train['cl']:8.0f}ms{train['nchw'] / train['cl']:6.2f}x"
            f"{1e3 * infer['nchw']:10.0f}ms{1e3 * infer['cl']:8.0f}ms"
            f"{infer['nchw'] / infer['cl']:6.2f}x{diff:10.1e}  "
            f"{'channels_last' if declared else 'NCHW'}",
            flush=True,
        )
    print("ratio = NCHW time / channels_last time: above 1.00x channels_last is faster.")


if __name__ == "__main__":
    main()
