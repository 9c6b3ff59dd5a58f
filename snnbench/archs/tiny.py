"""``tiny``: a two-layer conv SNN for CPU tests (ours, RECONSTRUCTED; docs/defenses.md).

conv3x3(C->16, bias)-BN-LIF, avgpool2, conv3x3(16->32, bias)-BN-LIF, avgpool2, flatten,
linear(32 * H/4 * W/4 -> K). Parameters at K = 10: 6,186 (8x8x1), 20,586 (28x28x1),
25,674 (32x32x3).
"""

from __future__ import annotations

from torch import nn

from snnbench.archs.base import init_weights
from snnbench.archs.registry import ARCHS
from snnbench.neurons import NeuronFactory


@ARCHS.register(
    "tiny",
    summary="2 conv spiking layers + linear readout, for CPU tests (ours)",
    paper="snnbench (RECONSTRUCTED)",
    channels_last=("cpu", "cuda"),
)
def tiny(
    neuron: NeuronFactory, *, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    size = image_size
    body = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        neuron((16, size, size)),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        neuron((32, size // 2, size // 2)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (size // 4) ** 2, num_classes),
    )
    init_weights(body)
    return body
