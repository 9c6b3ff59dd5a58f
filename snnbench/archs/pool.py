"""``AvgPool2x2``: ``nn.AvgPool2d(2)`` with a one-pass backward on the CPU (docs/performance.md).

PyTorch's CPU backward of a 2x2 average pool zero-fills the input gradient and then adds each
output gradient into its four cells: two passes over the large tensor, about a quarter of the
tiny arch's training step. Non-overlapping windows make the gradient a plain broadcast,
``grad_in[2i + a, 2j + b] = grad_out[i, j] / 4``, written once in the input's memory layout:
the same numbers (a division by 4 is exact), one pass. Odd sizes, other devices and
double backward keep PyTorch's own backward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class _Pool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.channels_last = (
            x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        )
        return F.avg_pool2d(x, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = grad.shape
        quarter = grad * 0.25
        if ctx.channels_last:
            out = torch.empty(
                n,
                c,
                2 * h,
                2 * w,
                dtype=grad.dtype,
                device=grad.device,
                memory_format=torch.channels_last,
            )
            cells = out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c)
            source = quarter.permute(0, 2, 3, 1)[:, :, None, :, None, :]
        else:
            out = torch.empty(n, c, 2 * h, 2 * w, dtype=grad.dtype, device=grad.device)
            cells = out.view(n, c, h, 2, w, 2)
            source = quarter[:, :, :, None, :, None]
        cells.copy_(source.expand_as(cells))
        return out


class AvgPool2x2(nn.AvgPool2d):
    """``nn.AvgPool2d(2)`` (same module type for isinstance, no state), faster backward."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[-1] % 2 == 0
            and x.shape[-2] % 2 == 0
            and torch.is_grad_enabled()
            and x.requires_grad
        ):
            return _Pool2x2.apply(x)
        return super().forward(x)
