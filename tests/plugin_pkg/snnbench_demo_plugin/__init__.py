"""A demo snnbench plugin: each object below is named by an entry point in pyproject.toml."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from snnbench.attacks import Attack
from snnbench.data import dataset_info, load_dataset
from snnbench.defenses import Defense, LossContext


@dataclass(frozen=True)
class PenaltySettings:
    weight: float = 0.01


class LogitPenalty(Defense):
    """Cross-entropy plus weight * mean squared logit (a loss-term defence)."""

    name = "logit-penalty"
    prefix = "logit_penalty"
    settings_cls = PenaltySettings
    slot = "loss"
    paper = "snnbench demo plugin"

    def extra_loss(self, ctx: LossContext) -> torch.Tensor:
        return self.settings.weight * ctx.logits.pow(2).mean()


def mlp(neuron, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """One hidden spiking layer of 32 neurons: flatten, linear, LIF, linear."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size**2, 32),
        neuron((32,)),
        nn.Linear(32, num_classes),
    )


class SignNoise(Attack):
    def grad_evals(self) -> int:
        return 0

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sign = torch.randint(0, 2, x.shape, dtype=x.dtype) * 2 - 1
        return torch.clamp(x + self.eps * sign, 0, 1)


def plugin_sign(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """A random corner of the Linf ball (0 GE), from a plugin."""
    return SignNoise("plugin-sign", eps, "Linf", {"draws": 1}, "snnbench_demo_plugin")


def _half_of_digits(split: str, root):
    x, y = load_dataset("digits", split, root)
    return x[::2].contiguous(), y[::2].contiguous()


DIGITS_HALF = replace(
    dataset_info("digits"),
    name="digits-half",
    loader=_half_of_digits,
    summary="every second image of digits (a plugin data set)",
)
