"""``sew-resnet19``: BrainCog's SEW-ResNet19 of the RandHet defence (docs/defenses.md).

Sources: Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021
(arXiv 2102.04159, SEW "ADD" connection); the ResNet19 of Zheng et al., AAAI 2021; as built by
BrainCog (BrainCog-X/Brain-Cog, Apache-2.0, ``examples/Snn_safety``) for RandHet (Wang et al.).

conv3x3(C -> 128, no bias)-BN-LIF; stages of BasicBlocks [3, 3, 2], widths 128, 256, 512; the
first block of stages 2 and 3 has stride 2 and a downsample path LIF(BN(conv1x1)). Block:
conv3x3-BN-LIF-conv3x3-BN-LIF (convs without bias), then SEW ADD ``out = identity + out``
(values can exceed 1); global average pool -> linear(512 -> K). 19 spiking layers.
Convs are Kaiming-initialised; the classifier keeps PyTorch's default Linear weight init
(BrainCog's std 1/fan_in is not reproduced), bias 0. Parameters at 32x32x3: 12,569,226
(K = 10), 12,615,396 (K = 100).
"""

from __future__ import annotations

import torch
from torch import nn

from snnbench.archs.base import init_weights
from snnbench.archs.registry import ARCHS
from snnbench.neurons import NeuronFactory

STEM_WIDTH = 128
# (width, blocks, stride of the first block) per stage.
STAGES: tuple[tuple[int, int, int], ...] = ((128, 3, 1), (256, 3, 2), (512, 2, 2))


def conv_size(size: int, stride: int) -> int:
    """Spatial size after a 3x3 pad-1 (or 1x1 pad-0) conv of ``stride``."""
    return (size - 1) // stride + 1


def conv_bn_lif(
    neuron: NeuronFactory,
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    out_size: int,
) -> list[nn.Module]:
    """conv (no bias) -> BN -> spiking layer of shape ``(out_channels, out_size, out_size)``."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        neuron((out_channels, out_size, out_size)),
    ]


class SEWBasicBlock(nn.Module):
    """conv-BN-LIF-conv-BN-LIF plus the identity (or LIF(BN(conv1x1)) downsample): SEW ADD."""

    def __init__(
        self, neuron: NeuronFactory, in_channels: int, out_channels: int, stride: int, size: int
    ) -> None:
        super().__init__()
        out_size = conv_size(size, stride)
        self.residual = nn.Sequential(
            *conv_bn_lif(neuron, in_channels, out_channels, 3, stride, out_size),
            *conv_bn_lif(neuron, out_channels, out_channels, 3, 1, out_size),
        )
        needs_downsample = stride != 1 or in_channels != out_channels
        self.downsample: nn.Module = (
            nn.Sequential(*conv_bn_lif(neuron, in_channels, out_channels, 1, stride, out_size))
            if needs_downsample
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.residual(x)


class SEWResNet(nn.Module):
    """Stem conv-BN-LIF, the SEW stages, global average pool and a linear readout."""

    def __init__(
        self, neuron: NeuronFactory, in_channels: int, num_classes: int, image_size: int
    ) -> None:
        super().__init__()
        size = image_size
        self.stem = nn.Sequential(*conv_bn_lif(neuron, in_channels, STEM_WIDTH, 3, 1, size))
        blocks: list[nn.Module] = []
        channels = STEM_WIDTH
        for width, count, stride in STAGES:
            for index in range(count):
                step = stride if index == 0 else 1
                blocks.append(SEWBasicBlock(neuron, channels, width, step, size))
                channels, size = width, conv_size(size, step)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(x.flatten(1))


@ARCHS.register(
    "sew-resnet19",
    summary="SEW-ResNet19 (ADD), stages [3, 3, 2] x (128, 256, 512) (BrainCog)",
    paper="Fang et al. NeurIPS 2021 (SEW ResNet); BrainCog examples/Snn_safety",
    aliases=("sew_resnet19", "resnet19"),
    channels_last=("cpu", "cuda"),
)
def sew_resnet19(
    neuron: NeuronFactory, *, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    """The SEW-ResNet19 body ``[T*B, C, H, W] -> [T*B, K]``."""
    body = SEWResNet(neuron, in_channels, num_classes, image_size)
    init_weights(body)  # Kaiming convs, BN (1, 0), linear bias 0; fc weight: PyTorch's default
    return body
