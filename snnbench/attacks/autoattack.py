"""APGD through the original AutoAttack code (PyPI ``pyautoattack`` 0.2.0), never torchattacks'
re-implementation, which differs from it (evaluation.md section 8).

- ``apgd-ce``: Croce & Hein, arXiv 2003.01690; 100 iterations, 1 restart, cross-entropy,
  momentum and step-size schedule as published; seed 0 (the library reseeds torch's global RNG
  with it on every call). 100 GE.

pyautoattack never changes the model's mode; the caller puts the model in eval mode.
"""
from __future__ import annotations

import torch
from pyautoattack.autopgd_base import APGDAttack
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.registry import ATTACKS


class APGD(Attack):
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        p = self.params
        attack = APGDAttack(model, n_iter=p["steps"], norm=self.norm, n_restarts=p["restarts"],
                            eps=self.eps, seed=p["seed"], loss=p["loss"], eot_iter=1,
                            device=x.device)
        return attack.perturb(x, y)


@ATTACKS.register("apgd-ce", summary="AutoAttack's APGD on cross-entropy, 100 iterations, 1 restart",
                  paper="Croce & Hein 2020, arXiv 2003.01690")
def apgd_ce(eps: float, norm: str = "Linf", steps: int | None = None) -> Attack:
    return APGD("apgd-ce", eps, parse_norm(norm),
                {"steps": steps or 100, "restarts": 1, "loss": "ce", "seed": 0},
                "pyautoattack.APGDAttack")
