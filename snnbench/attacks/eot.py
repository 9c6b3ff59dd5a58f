"""Expectation over Transformation (EoT) for stochastic models (docs/protocol.md).

Athalye et al., "Obfuscated Gradients Give a False Sense of Security", arXiv 1802.00420: each step
uses g = (1/K) sum_k grad_x L(f(x; xi_k), y) over K independent draws of the model's randomness.

- ``eot_gradient``: that mean, accumulated sequentially (memory of one pass). At K = 1 it is the
  plain input gradient, bit for bit, so a native step loop built on it equals the library's.
- ``LogitMeanEoT``: the model averaged over K draws (``eot_mode: logit-mean``), the objective
  handed to gradient-free attacks (Square).
- ``mean_prediction`` / ``EoTPrediction``: how an attack *judges success* on a stochastic model:
  the argmax of the mean softmax over its K draws, never one draw (one lucky draw is not a
  broken sample). At K = 1, or when the K draws agree bit for bit (a deterministic model), it
  is that draw's logits, so the decision is the library's own.

Libraries with their own EoT get K directly (torchattacks ``EOTPGD(eot_iter=K)``, pyautoattack
``APGDAttack(eot_iter=K)``); this module serves the others (rfgsm, mifgsm, mtpgd, PGD-L2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def eot_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    k: int,
    draws: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of ``k`` input gradients of ``loss_fn(model(x), y)``, each a fresh forward pass (a
    fresh draw on a stochastic model). ``x`` itself is left untouched; ``draws``, when given,
    receives each draw's detached logits (to judge the point without extra passes)."""
    if k < 1:
        raise ValueError(f"EoT needs k >= 1 draws, got {k}")
    total = torch.zeros_like(x)
    for _ in range(k):
        x_in = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_in)
            loss = loss_fn(logits, y)
        total += torch.autograd.grad(loss, x_in, retain_graph=False, create_graph=False)[0]
        if draws is not None:
            draws.append(logits.detach())
    return total / k


def mean_prediction(draws: list[torch.Tensor]) -> torch.Tensor:
    """``[B, C]`` scores whose argmax is the EoT-averaged prediction of ``draws`` (logits of K
    draws at one point): the log of the mean softmax, or the draw itself when K = 1 or every
    draw is bit-identical (a deterministic model: the library's decision, unchanged)."""
    first = draws[0]
    if all(torch.equal(first, other) for other in draws[1:]):
        return first
    return torch.stack([d.float().softmax(1) for d in draws]).mean(0).log()


def eot_predict(model: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """``mean_prediction`` of ``k`` fresh no-grad draws of ``model`` at ``x``."""
    with torch.no_grad():
        return mean_prediction([model(x) for _ in range(k)])


class LogitMeanEoT(nn.Module):
    """``forward(x)`` = mean logits of ``k`` draws of ``model`` (sequential, one pass in memory).

    On a deterministic model this only multiplies the cost by ``k``; callers use it when K > 1.
    """

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"EoT needs k >= 1 draws, got {k}")
        self.model = model
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.model(x)
        for _ in range(self.k - 1):
            total = total + self.model(x)
        return total / self.k


class EoTPrediction(LogitMeanEoT):
    """``forward(x)`` = ``eot_predict(model, x, k)``: a stand-in for the model wherever a library
    only *decides* (AutoAttack's cascade), never where it takes gradients."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return eot_predict(self.model, x, self.k)
