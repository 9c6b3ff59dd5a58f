"""Attacks through torchattacks 3.5.1, every parameter passed (defaults drift between releases).

- ``fgsm``: one eps sign step (Goodfellow et al., arXiv 1412.6572); L2: one eps step along the
  normalised gradient. 1 GE.
- ``pgd{n}``: Madry et al., arXiv 1706.06083; uniform random start, cross-entropy, one restart;
  n GE. Step 0.01 at eps = 8/255 (2.55/255, TGO; evaluation.md section 2), scaled in proportion
  to eps elsewhere: a fixed 0.01 cannot cross the ball at digits' 32/255 in 10 steps (PGD-10
  then lost to FGSM), so the step is ``0.31875 * eps`` and recorded in the attack key.

torchattacks switches the model to eval mode for the call and restores train mode afterwards;
snnbench models keep their randomness on a flag, so eval mode silences nothing.
"""
from __future__ import annotations

import torch
import torchattacks
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.registry import ATTACKS

PGD_STEP_PER_EPS = 0.01 / (8 / 255)   # = 0.31875: the papers' 0.01 at eps = 8/255


class FGSM(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.norm == "Linf":
            return torchattacks.FGSM(model, eps=self.eps)(x, y)
        return torchattacks.PGDL2(model, eps=self.eps, alpha=self.eps, steps=1,
                                  random_start=False)(x, y)


class PGD(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        cls = torchattacks.PGD if self.norm == "Linf" else torchattacks.PGDL2
        attack = cls(model, eps=self.eps, alpha=p["alpha"], steps=p["steps"],
                     random_start=p["random_start"])
        return attack(x, y)


@ATTACKS.register("fgsm", summary="FGSM: one eps-sized gradient-sign step (1 GE)",
                  paper="Goodfellow et al. 2015, arXiv 1412.6572")
def fgsm(eps: float, norm: str = "Linf", steps: int | None = None) -> Attack:
    return FGSM("fgsm", eps, parse_norm(norm), {"steps": 1}, "torchattacks.FGSM")


def _pgd_factory(default_steps: int):
    def make(eps: float, norm: str = "Linf", steps: int | None = None) -> Attack:
        n = steps or default_steps
        return PGD(f"pgd{default_steps}", eps, parse_norm(norm),
                   {"steps": n, "alpha": PGD_STEP_PER_EPS * eps, "random_start": True}, "torchattacks.PGD")
    return make


for _steps in (10,):
    ATTACKS.add(f"pgd{_steps}", _pgd_factory(_steps),
                summary=f"PGD, {_steps} steps of 0.32 eps (0.01 at 8/255), random start, CE ({_steps} GE)",
                paper="Madry et al. 2018, arXiv 1706.06083")
