"""The architecture registry. A builder takes a neuron factory and the data's shape and returns
the body ``[T*B, C, H, W] -> [T*B, K]`` (normalisation and the time average are added by
``SpikingModel``).

A registration's ``channels_last`` names the device types where the arch runs faster with
channels_last weights (``runtime.place``). On the CPU it is measured per arch with
``benchmarks/layout.py`` (docs/performance.md: tiny, WRN-16-4 and SEW-ResNet19 train 1.07-1.3x
faster, VGG-11 the same in both); on CUDA it follows PyTorch's guidance for conv nets under mixed
precision (tensor cores want NHWC), not yet measured here."""

from __future__ import annotations

from typing import Callable

from torch import nn

from snnbench.registry import Registry

ArchBuilder = Callable[..., nn.Module]


def _check_plugin(name: str, obj: object) -> None:
    if not callable(obj):
        raise TypeError(
            f"{obj!r} is not an arch builder (neuron, *, in_channels, num_classes, "
            "image_size) -> nn.Module"
        )


ARCHS: Registry[ArchBuilder] = Registry("arch", plugins="snnbench.archs", check=_check_plugin)
