"""Surrogate derivatives of the spike step and the spike function that uses them.

docs/defenses.md: the tgo track uses the triangle ``g(x) = max(0, w - |x|) / w**2`` (w = 1,
peak 1), the randhet track the arctangent ``g(x) = (a/2) / (1 + (pi a x / 2)**2)`` (a = 2, peak 1).
Every shape here integrates to 1; ``width`` scales its support. The attacker may swap the
backward pass without touching the forward (docs/protocol.md): neurons consult
``attack_surrogate`` before their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from snnbench.registry import Registry

SurrogateFn = Callable[[torch.Tensor, float], torch.Tensor]
SURROGATES: Registry[SurrogateFn] = Registry("surrogate")


@SURROGATES.register("triangle", summary="max(0, w-|x|)/w^2 (TET, PKU code; tgo track, w=1)")
def triangle(x: torch.Tensor, width: float) -> torch.Tensor:
    return (width - x.abs()).clamp(min=0) / width**2


@SURROGATES.register(
    "atan", summary="(a/2)/(1+(pi a x/2)^2) (SpikingJelly/BrainCog; randhet track, a=2)"
)
def atan(x: torch.Tensor, width: float) -> torch.Tensor:
    alpha = width
    return (alpha / 2) / (1 + (math.pi * alpha * x / 2) ** 2)


@SURROGATES.register("rect", summary="1[|x| < w/2]/w (box)")
def rect(x: torch.Tensor, width: float) -> torch.Tensor:
    return (x.abs() < width / 2).to(x.dtype) / width


@SURROGATES.register("sigmoid", summary="derivative of sigmoid(4x/w)")
def sigmoid(x: torch.Tensor, width: float) -> torch.Tensor:
    slope = 4.0 / width
    s = torch.sigmoid(slope * x)
    return slope * s * (1 - s)


@SURROGATES.register("fastsigmoid", summary="derivative of the fast sigmoid (SuperSpike), a=2/w")
def fastsigmoid(x: torch.Tensor, width: float) -> torch.Tensor:
    slope = 2.0 / width
    return slope / (2 * (1 + slope * x.abs()) ** 2)


@SURROGATES.register("exp", summary="exp(-|x|/w)/(2w) (Laplace density)")
def exp(x: torch.Tensor, width: float) -> torch.Tensor:
    return torch.exp(-x.abs() / width) / (2 * width)


@dataclass(frozen=True)
class Surrogate:
    """A surrogate shape and its width; ``grad(x)`` is the spike's backward at ``x = u - theta``."""

    kind: str = "triangle"
    width: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SURROGATES.canonical(self.kind))
        if not self.width > 0:
            raise ValueError(f"surrogate width must be positive, got {self.width}")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return SURROGATES.get(self.kind)(x, self.width)


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate backward. ``ge`` chooses H(0) = 1 (tet form) or 0 (BrainCog)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, ge: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype) if ge else (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None, None


def spike(x: torch.Tensor, surrogate: Surrogate, ge: bool = True) -> torch.Tensor:
    """Spikes ``H(x)`` with the surrogate's derivative in the backward pass."""
    return SpikeFunction.apply(x, surrogate, ge)
