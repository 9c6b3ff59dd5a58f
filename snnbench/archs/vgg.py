"""``vgg11``: the PKU VGG-11 of SNN-RAT, SR, StoG, DLIF and TGO (docs/defenses.md).

Sources: Ding et al., "SNN-RAT: Robustness-enhanced training for spiking neural networks",
NeurIPS 2022 (putshua/SNN-RAT, no licence: reimplemented from the spec text); the same body is
used by SR (Liu et al., ICML 2024), StoG (Ding et al., AAAI 2024), DLIF (Ding et al., ICML 2024)
and TGO (Wang et al., arXiv 2602.20548).

Each conv is 3x3, pad 1, with bias, then BN, then a spiking layer:
[64] avgpool2, [128, 256] avgpool2, [512, 512, 512] avgpool2, [512, 512], flatten
512 * (H/8)^2 (8192 at 32 px) -> linear 4096 -> LIF -> linear 4096 -> LIF -> linear K.
No dropout; 10 spiking layers. Not torchvision's VGG-11 nor the common CIFAR VGG-11 (5 pools,
512 -> K head). Parameters at 32x32x3: 61,377,034 (K = 10), 61,745,764 (K = 100).
"""

from __future__ import annotations

from torch import nn

from snnbench.archs.base import init_weights
from snnbench.archs.registry import ARCHS
from snnbench.neurons import NeuronFactory

# Conv widths per stage; an average pool of 2 follows every stage but the last.
STAGES: tuple[tuple[int, ...], ...] = ((64,), (128, 256), (512, 512, 512), (512, 512))
HIDDEN = 4096


def _features(
    neuron: NeuronFactory, in_channels: int, image_size: int
) -> tuple[list[nn.Module], int]:
    """The conv-BN-LIF stages; returns the layers and the spatial size after the last pool."""
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for index, widths in enumerate(STAGES):
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                neuron((width, size, size)),
            ]
            channels = width
        if index < len(STAGES) - 1:
            layers.append(nn.AvgPool2d(2))
            size //= 2
    return layers, size


@ARCHS.register(
    "vgg11",
    summary="PKU VGG-11: 8 conv-BN-LIF, 3 avgpools, 2 x 4096 spiking FC",
    paper="Ding et al. NeurIPS 2022 (SNN-RAT, PKU code); TGO arXiv 2602.20548",
    channels_last=("cuda",),
)
def vgg11(
    neuron: NeuronFactory, *, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    """The PKU VGG-11 body ``[T*B, C, H, W] -> [T*B, K]``; ``image_size`` must be at least 8."""
    features, size = _features(neuron, in_channels, image_size)
    flat = STAGES[-1][-1] * size * size
    body = nn.Sequential(
        *features,
        nn.Flatten(),
        nn.Linear(flat, HIDDEN),
        neuron((HIDDEN,)),
        nn.Linear(HIDDEN, HIDDEN),
        neuron((HIDDEN,)),
        nn.Linear(HIDDEN, num_classes),
    )
    init_weights(body)
    return body
