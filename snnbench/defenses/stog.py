"""``stog``: stochastic gating of spikes (Ding et al., "Enhancing the robustness of SNNs with
stochastic gating mechanisms", AAAI 2024; DingJianhao/StoG-meets-SNN, MIT; docs/defenses.md).

A gate after every spiking layer keeps each spike with probability ``p = clamp(rho, 0.1, 1)``
(rho learnable, init 1), drawn per time step and sample, random at test time too (its
"attack mode" that switches gates off is never used). rho's gradient carries the
reference's sign (``stog.grad_sign = "reference"``, the code that produced the published
numbers); ``"analytic"`` is the relaxed derivative's own sign. Extra loss on rho only:
``gamma * sum 1/2 rho^2`` over all gates, gamma = 5e-6. rho has its own SGD (lr 0.1, momentum
0.9, no weight decay, cosine) and is updated only while epoch < K = 100 (``stog.freeze_epoch``),
then frozen. ``stog`` alone trains on clean inputs; the paper's main setting adds FGSM 2/255
examples (``stog+at`` with ``at.steps=1 at.alpha=2/255 at.start=none``), crafted with BatchNorm
in train mode as the reference does (a model with ``stog`` defaults ``attack.train.bn_mode`` to
``train``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES
from snnbench.neurons import NeuronFactory
from snnbench.neurons.stog import StoGGate, gated_factory
from snnbench.train_schedule import cosine_lr


@dataclass(frozen=True)
class StoGSettings:
    prior: float = 5e-6  # gamma
    lr: float = 0.1
    momentum: float = 0.9
    freeze_epoch: int = 100  # K
    temperature: float = 0.5
    grad_reduce: str = "mean"
    grad_sign: str = "reference"  # reference (inhibition_module.backward) | analytic


def gates(model: nn.Module) -> list[StoGGate]:
    return [m for m in model.modules() if isinstance(m, StoGGate)]


@DEFENSES.register(
    "stog",
    summary="Bernoulli gates after every spiking layer, learnable keep rate, random at test time",
    paper="Ding et al. AAAI 2024",
)
class StoG(Defense):
    name = "stog"
    prefix = "stog"
    slot = "gate"
    settings_cls = StoGSettings
    partner_defaults = {"attack.train.bn_mode": "train"}  # the reference crafts in train mode

    def wrap_neuron(self, factory: NeuronFactory, timesteps: int) -> NeuronFactory:
        s = self.settings
        return gated_factory(
            factory,
            timesteps,
            temperature=s.temperature,
            grad_reduce=s.grad_reduce,
            grad_sign=s.grad_sign,
        )

    def stochastic(self) -> bool:
        return True

    def separate_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [g.rho for g in gates(model)]

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        s = self.settings
        return torch.optim.SGD(
            self.separate_parameters(model), lr=s.lr, momentum=s.momentum, weight_decay=0.0
        )

    def step_optimizer(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        if epoch >= self.settings.freeze_epoch:
            optimizer.zero_grad(set_to_none=True)
            return
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(self.settings.lr, epoch, epochs)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def extra_loss(self, ctx: LossContext) -> torch.Tensor | None:
        rhos = [g.rho for g in gates(ctx.model)]
        return self.settings.prior * sum(0.5 * (r**2).sum() for r in rhos)
