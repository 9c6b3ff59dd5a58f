"""``at``: adversarial training on PGD examples (Madry et al. 2018, arXiv 1706.06083;
docs/defenses.md).

    x0 = clip01(x + U(-s*eps, s*eps)),  x_{j+1} = clip01(clip_eps(x_j + alpha sign(grad_x CE)))

and the loss is CE on the last x_j only. tgo/pku tracks: eps 2/255, alpha 1/255, 2 steps,
uniform start (SNN-RAT code defaults; TGO gives eps 2/255 only, its step size and count are
RECONSTRUCTED as SNN-RAT's). randhet track: BrainCog's "RFGSM", a start in U(-eps/10, eps/10)
then one step alpha = 4/255, eps = 4/255. Every stochastic part stays on while crafting; BatchNorm
follows the reference code of each track (``attack.train.bn_mode``): eval mode (running
statistics, no updates) on the tgo and pku tracks, as the PKU and stable-snn code craft after
``model.eval()``; train mode (batch statistics and running-stat updates from the adversarial
pass) on the randhet track and in any model with ``stog``, as BrainCog and StoG-meets-SNN craft
with the model in train mode. The previous mode is restored afterwards.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES
from snnbench.errors import SnnbenchError


@dataclass(frozen=True)
class AdversarialSettings:
    eps: float = 2 / 255
    alpha: float = 1 / 255
    steps: int = 2
    start: str = "uniform"  # uniform | normal | none
    start_scale: float = 1.0  # uniform: U(-s eps, s eps); normal: N(0, s^2)
    # eval (tgo/pku tracks) | train (randhet track, and with stog); key attack.train.bn_mode
    bn_mode: str = field(default="eval", metadata={"scope": "attack.train"})

    def __post_init__(self) -> None:
        if self.start not in ("uniform", "normal", "none"):
            raise SnnbenchError(f"start must be uniform, normal or none, got {self.start!r}")
        if self.bn_mode not in ("eval", "train"):
            raise SnnbenchError(f"bn_mode must be eval or train, got {self.bn_mode!r}")
        if self.steps < 1 or not 0 <= self.eps <= 1:
            raise SnnbenchError("adversarial training needs steps >= 1 and eps in [0, 1]")


RFGSM_RANDHET = AdversarialSettings(
    eps=4 / 255, alpha=4 / 255, steps=1, start="uniform", start_scale=0.1, bn_mode="train"
)


@contextlib.contextmanager
def batchnorm_eval(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """BatchNorm layers in eval mode (no batch statistics, no running-stat updates) while every
    other module keeps its mode, so training-time randomness stays on; restored afterwards."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    if enabled:
        for m in norms:
            m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)


def adversarial_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: AdversarialSettings
) -> torch.Tensor:
    """Sign-gradient steps from a random start, projected on the eps-ball and [0, 1]."""
    with batchnorm_eval(model, s.bn_mode == "eval"):
        if s.start == "uniform":
            x_adv = x + torch.empty_like(x).uniform_(-s.start_scale * s.eps, s.start_scale * s.eps)
        elif s.start == "normal":
            x_adv = x + s.start_scale * torch.randn_like(x)
        else:
            x_adv = x.clone()
        x_adv = x_adv.clamp(0, 1).detach()
        for _ in range(s.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv).float(), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            step = x_adv.detach() + s.alpha * grad.sign()
            x_adv = torch.min(torch.max(step, x - s.eps), x + s.eps).clamp(0, 1).detach()
    return x_adv


@DEFENSES.register(
    "at",
    summary="adversarial training on PGD examples (2/255, 2 steps; randhet track: RFGSM 4/255)",
    paper="Madry et al. 2018, arXiv 1706.06083",
)
class AT(Defense):
    name = "at"
    prefix = "at"
    slot = "generator"
    settings_cls = AdversarialSettings

    @classmethod
    def defaults(cls, track: str) -> AdversarialSettings:
        return RFGSM_RANDHET if track == "randhet" else AdversarialSettings()

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return adversarial_examples(model, x, y, self.settings)
