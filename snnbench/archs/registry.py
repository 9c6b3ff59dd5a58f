"""The architecture registry. A builder takes a neuron factory and the data's shape and returns
the body ``[T*B, C, H, W] -> [T*B, K]`` (normalisation and the time average are added by
``SpikingModel``)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from snnbench.registry import Registry

ArchBuilder = Callable[..., nn.Module]
ARCHS: Registry[ArchBuilder] = Registry("arch")
