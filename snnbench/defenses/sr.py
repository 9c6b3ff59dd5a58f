"""``sr``: sparse-gradient regularisation (Liu et al., "Enhancing Adversarial Robustness in SNNs
with Sparse Gradients", ICML 2024; docs/defenses.md).

On the training batch ``x_in``, with ``f(x) = sigmoid(z_y(x) - z_j(x))`` (z the T-averaged
logits, j the runner-up class at x_in, kept for the second pass) and ``d = sign(grad_x f(x_in))``
(detached):

    L_sr = mean_batch(((f(x_in + h d) - f(x_in)) / h)^2)       total: CE + lambda_sr * L_sr

a finite-difference estimate of the squared L1 norm of the input gradient of the true-class
margin probability. h = 0.01 in the model's normalised input space, as the reference code
(putshua/gradient_reg_defense and the RandHet code normalise in the data loader, so their step
moves a normalised input): the pixel step is ``h * std_c`` per channel (about 0.0025 on CIFAR)
and the quotient is taken in normalised units. ``sr.step_space = "pixel"`` takes h in pixel
units instead. lambda_sr = 0.001 (RandHet paper). Gradient flows through both forward passes;
stochastic models draw independently in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES
from snnbench.errors import SnnbenchError


@dataclass(frozen=True)
class SRSettings:
    weight: float = 0.001  # lambda_sr
    step: float = 0.01  # h
    step_space: str = "normalised"  # normalised (the reference) | pixel

    def __post_init__(self) -> None:
        if self.step_space not in ("normalised", "pixel"):
            raise SnnbenchError(
                f"sr.step_space must be normalised or pixel, got {self.step_space!r}"
            )


def margin_probability(
    logits: torch.Tensor, y: torch.Tensor, runner_up: torch.Tensor
) -> torch.Tensor:
    return torch.sigmoid(
        logits.gather(1, y[:, None]) - logits.gather(1, runner_up[:, None])
    ).squeeze(1)


def runner_up_class(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    masked = logits.detach().clone()
    masked.scatter_(1, y[:, None], float("-inf"))
    return masked.argmax(1)


def input_scale(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | float:
    """Pixels per normalised unit: the std of the model's input normalisation (1 without one)."""
    normalize = getattr(model, "normalize", None)
    std = getattr(normalize, "std", None)
    return std.to(x.dtype) if isinstance(std, torch.Tensor) else 1.0


def sparse_gradient_term(
    model: torch.nn.Module,
    x_in: torch.Tensor,
    y: torch.Tensor,
    step: float,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``L_sr`` on the batch ``x_in`` (two forwards, one input-gradient); the step moves the
    pixels by ``step * scale`` and the quotient divides by ``step`` (``scale`` = the input's std:
    the difference quotient in normalised units)."""
    x = x_in.detach().requires_grad_(True)
    logits = model(x).float()
    j = runner_up_class(logits, y)
    f0 = margin_probability(logits, y, j)
    (grad,) = torch.autograd.grad(f0.sum(), x, retain_graph=True)
    f1 = margin_probability(model(x_in.detach() + step * scale * grad.sign()).float(), y, j)
    return (((f1 - f0) / step) ** 2).mean()


@DEFENSES.register(
    "sr",
    summary="sparse-gradient regulariser: finite-difference L1 input "
    "gradient of the margin probability",
    paper="Liu et al. ICML 2024",
)
class SR(Defense):
    name = "sr"
    prefix = "sr"
    slot = "loss"
    settings_cls = SRSettings

    def extra_loss(self, ctx: LossContext) -> torch.Tensor | None:
        s = self.settings
        if s.weight == 0:
            return None
        scale = input_scale(ctx.model, ctx.x_in) if s.step_space == "normalised" else 1.0
        return s.weight * sparse_gradient_term(ctx.model, ctx.x_in, ctx.y, s.step, scale)
