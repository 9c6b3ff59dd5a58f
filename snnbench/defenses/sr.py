"""``sr``: sparse-gradient regularisation (Liu et al., "Enhancing Adversarial Robustness in SNNs
with Sparse Gradients", ICML 2024; docs/defenses.md).

On the training batch ``x_in``, with ``f(x) = sigmoid(z_y(x) - z_j(x))`` (z the T-averaged
logits, j the runner-up class at x_in, kept for the second pass) and ``d = sign(grad_x f(x_in))``
(detached):

    L_sr = mean_batch(((f(x_in + h d) - f(x_in)) / h)^2)       total: CE + lambda_sr * L_sr

a finite-difference estimate of the squared L1 norm of the input gradient of the true-class
margin probability. h = 0.01 in pixel units (the RandHet code's 0.01 was in normalised units,
quirk Q5), lambda_sr = 0.001 (RandHet paper). Gradient flows through both forward passes;
stochastic models draw independently in each.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES


@dataclass(frozen=True)
class SRSettings:
    weight: float = 0.001       # lambda_sr
    step: float = 0.01          # h, pixel units


def margin_probability(logits: torch.Tensor, y: torch.Tensor, runner_up: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits.gather(1, y[:, None]) - logits.gather(1, runner_up[:, None])).squeeze(1)


def runner_up_class(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    masked = logits.detach().clone()
    masked.scatter_(1, y[:, None], float("-inf"))
    return masked.argmax(1)


def sparse_gradient_term(model: torch.nn.Module, x_in: torch.Tensor, y: torch.Tensor,
                         step: float) -> torch.Tensor:
    """``L_sr`` on the batch ``x_in`` (two forwards, one input-gradient)."""
    x = x_in.detach().requires_grad_(True)
    logits = model(x).float()
    j = runner_up_class(logits, y)
    f0 = margin_probability(logits, y, j)
    (grad,) = torch.autograd.grad(f0.sum(), x, retain_graph=True)
    f1 = margin_probability(model(x_in.detach() + step * grad.sign()).float(), y, j)
    return (((f1 - f0) / step) ** 2).mean()


@DEFENSES.register("sr", summary="sparse-gradient regulariser: finite-difference L1 input "
                   "gradient of the margin probability", paper="Liu et al. ICML 2024")
class SR(Defense):
    name = "sr"
    prefix = "sr"
    slot = "loss"
    settings_cls = SRSettings

    def extra_loss(self, ctx: LossContext) -> torch.Tensor | None:
        s = self.settings
        if s.weight == 0:
            return None
        return s.weight * sparse_gradient_term(ctx.model, ctx.x_in, ctx.y, s.step)
