"""``AvgPool2x2`` (docs/performance.md): the same output and input gradient as PyTorch's
``nn.AvgPool2d(2)``, bit for bit, in both memory layouts; odd sizes keep PyTorch's path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnbench.archs.pool import AvgPool2x2


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(8, 6), (7, 6), (5, 5)])
def test_same_output_and_gradient_as_avg_pool(layout, size):
    torch.manual_seed(0)
    x = torch.randn(3, 5, *size).to(memory_format=layout)
    grad = torch.randn(3, 5, size[0] // 2, size[1] // 2)
    results = []
    for pool in (nn.AvgPool2d(2), AvgPool2x2()):
        inp = x.clone().requires_grad_()
        out = pool(inp)
        out.backward(grad)
        results.append((out, inp.grad))
    (out0, grad0), (out1, grad1) = results
    assert torch.equal(out0, out1) and torch.equal(grad0, grad1)
    assert grad1.is_contiguous(memory_format=layout)
    assert isinstance(AvgPool2x2(), nn.AvgPool2d)
