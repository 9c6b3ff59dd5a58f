"""``wrn16``: the pre-activation WRN-16-4 of the PKU code (docs/defenses.md).

Sources: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv 1605.07146), in the
spiking form of Ding et al., SNN-RAT, NeurIPS 2022 (putshua/SNN-RAT, no licence: reimplemented
from the spec text), also used by SR, StoG, DLIF and TGO (arXiv 2602.20548).

conv3x3(C -> 16, no bias); three groups of 2 pre-activation blocks, widths 64, 128, 256, strides
1, 2, 2; final BN -> LIF -> global average pool (= avgpool 8 at 32 px) -> linear(256 -> K).
Block (in -> out, stride s):

    in != out:  x <- LIF(BN(x));  shortcut = conv1x1(x, stride s, no bias);  residual from x
    in == out:  shortcut = x;     residual from LIF(BN(x))
    residual:   conv3x3(stride s) -> BN -> LIF -> conv3x3
    output:     c0 * shortcut + c1 * residual

``(c0, c1)`` is the learnable ``mix`` parameter of each block, init (0.5, 0.5); SNN-RAT's hook
projects it onto the simplex. No dropout; 13 spiking layers. Parameters at 32x32x3:
2,748,902 (K = 10), 2,772,032 (K = 100), mixing weights included.
"""

from __future__ import annotations

import torch
from torch import nn

from snnbench.archs.base import init_weights
from snnbench.archs.registry import ARCHS
from snnbench.neurons import NeuronFactory

STEM_WIDTH = 16
WIDTHS: tuple[int, ...] = (64, 128, 256)  # 16 * widen factor 4
STRIDES: tuple[int, ...] = (1, 2, 2)
BLOCKS_PER_GROUP = 2  # (16 - 4) / 6


def conv_size(size: int, stride: int) -> int:
    """Spatial size after a 3x3 pad-1 (or 1x1 pad-0) conv of ``stride``."""
    return (size - 1) // stride + 1


class PreActBlock(nn.Module):
    """One pre-activation wide block with learnable mixing weights ``mix = (c0, c1)``."""

    def __init__(
        self, neuron: NeuronFactory, in_channels: int, out_channels: int, stride: int, size: int
    ) -> None:
        super().__init__()
        out_size = conv_size(size, stride)
        self.project = in_channels != out_channels
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.act1 = neuron((in_channels, size, size))
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = neuron((out_channels, out_size, out_size))
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            if self.project
            else nn.Identity()
        )
        self.mix = nn.Parameter(torch.full((2,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        if self.project:
            x = pre
        shortcut = self.shortcut(x)
        residual = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        return self.mix[0] * shortcut + self.mix[1] * residual


class WideResNet(nn.Module):
    """Stem conv, the block groups, then BN -> LIF -> global pool -> linear readout."""

    def __init__(
        self, neuron: NeuronFactory, in_channels: int, num_classes: int, image_size: int
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, STEM_WIDTH, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        channels, size = STEM_WIDTH, image_size
        for width, stride in zip(WIDTHS, STRIDES):
            for index in range(BLOCKS_PER_GROUP):
                step = stride if index == 0 else 1
                blocks.append(PreActBlock(neuron, channels, width, step, size))
                channels, size = width, conv_size(size, step)
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.act = neuron((channels, size, size))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.pool(self.act(self.bn(x)))
        return self.fc(x.flatten(1))


@ARCHS.register(
    "wrn16",
    summary="WRN-16-4, pre-activation, learnable shortcut/residual mixing (PKU)",
    paper="Zagoruyko & Komodakis BMVC 2016; Ding et al. NeurIPS 2022 (SNN-RAT)",
    aliases=("wrn16_4",),
    channels_last=("cpu", "cuda"),
)
def wrn16(
    neuron: NeuronFactory, *, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    """The WRN-16-4 body ``[T*B, C, H, W] -> [T*B, K]``; mixing weights start at (0.5, 0.5)."""
    body = WideResNet(neuron, in_channels, num_classes, image_size)
    init_weights(body)  # leaves ``mix`` at its (0.5, 0.5) init
    return body
