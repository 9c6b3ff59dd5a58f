"""``rat``: regularised adversarial training (Ding et al., "SNN-RAT", NeurIPS 2022;
docs/defenses.md).

Inputs: FGSM, eps 2/255, no random start (SNN-RAT log ``FGSM[0.007843]``); randhet track: the
RFGSM generator of ``at`` (BatchNorm in train mode while crafting, as BrainCog; see ``at``). Weight decay 0. After every optimiser step, on every Conv2d (weight
as ``C_out x C_in*k*k``) and every Linear, classifier included:

    W <- (1 + beta) W - beta W W^T W          beta = 0.004 (SNN-RAT log, RandHet paper)

a Linear with >= 200 rows updates only a fresh random floor(0.3 * rows) subset of its rows, as
the SNN-RAT code does. Then every mixing pair (WRN's ``mix``) is projected onto the probability
simplex (sort-based Euclidean projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from snnbench.defenses.at import RFGSM_RANDHET, adversarial_examples, AdversarialSettings
from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES


@dataclass(frozen=True)
class RATSettings(AdversarialSettings):
    eps: float = 2 / 255
    alpha: float = 2 / 255
    steps: int = 1
    start: str = "none"
    beta: float = 0.004
    row_fraction: float = 0.3  # share of rows updated in a Linear with >= min_rows rows
    min_rows: int = 200


@torch.no_grad()
def retract(weight: torch.Tensor, beta: float) -> torch.Tensor:
    """One step ``W <- (1 + beta) W - beta W W^T W`` towards orthonormal rows."""
    w = weight.flatten(1)
    return ((1 + beta) * w - beta * (w @ w.t() @ w)).view_as(weight)


@torch.no_grad()
def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based)."""
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, 0) - 1
    index = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = int(torch.nonzero(u - cumulative / index > 0).max())
    return (v - cumulative[rho] / (rho + 1)).clamp(min=0)


@torch.no_grad()
def orthogonality_step(
    model: nn.Module, s: RATSettings, generator: torch.Generator | None = None
) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.copy_(retract(module.weight, s.beta))
        elif isinstance(module, nn.Linear):
            rows = module.weight.shape[0]
            if rows >= s.min_rows:
                chosen = torch.randperm(rows, generator=generator)[: int(s.row_fraction * rows)]
                chosen = chosen.to(module.weight.device)
                module.weight[chosen] = retract(module.weight[chosen], s.beta)
            else:
                module.weight.copy_(retract(module.weight, s.beta))
    for name, param in model.named_parameters():
        if name.endswith(".mix") or name == "mix":
            param.copy_(project_simplex(param))


@DEFENSES.register(
    "rat",
    summary="FGSM 2/255 training + orthogonality retraction (beta 0.004) + simplex mixing",
    paper="Ding et al. NeurIPS 2022 (SNN-RAT)",
)
class RAT(Defense):
    name = "rat"
    prefix = "rat"
    slot = "generator"
    settings_cls = RATSettings

    @classmethod
    def defaults(cls, track: str) -> RATSettings:
        if track == "randhet":
            g = RFGSM_RANDHET
            return RATSettings(
                eps=g.eps,
                alpha=g.alpha,
                steps=g.steps,
                start=g.start,
                start_scale=g.start_scale,
                bn_mode=g.bn_mode,
            )
        return RATSettings()

    def weight_decay(self, track_default: float) -> float:
        return 0.0

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return adversarial_examples(model, x, y, self.settings)

    def after_step(self, model: nn.Module, epoch: int) -> None:
        orthogonality_step(model, self.settings)
