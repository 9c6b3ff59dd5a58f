"""StoG: a stochastic gate on a spiking layer's output (docs/defenses.md).

Paper: Ding et al., "Enhancing the robustness of spiking neural networks with stochastic gating
mechanisms", AAAI 2024 (code: DingJianhao/StoG-meets-SNN, MIT).

    out = s * m,   m ~ Bernoulli(p),   p = clamp(rho, 0.1, 1)
    forward   m = 1[logit(p) + l >= 0],  l = log(U / (1 - U)),  U ~ Uniform(0, 1)
    backward  dm/dp ~ sig (1 - sig) / (tau_c p (1 - p + 1e-3)),  sig = sigmoid((logit(p) + l) / tau_c)

``rho`` has the neuron shape, is shared over batch and time, init 1 (gate fully open: the ungated
layer exactly); m is drawn per time step, sample and neuron, in training and in evaluation alike.
The backward is the straight-through relaxed Bernoulli times -1, as the reference's
``inhibition_module.backward`` (``-1/(tau p (1-p))``): the published numbers were produced with
that sign, so it is the default (``grad_sign = "reference"``). ``grad_sign = "analytic"`` keeps
the relaxed derivative's own, positive sign. The gradient to ``s`` is ``m`` either way, so attacks
(which differentiate in the input) see no difference. The clamp passes gradient to
``rho`` only where ``0.1 < rho < 1`` strictly. Defaults: ``temperature = 0.5`` (tau_c),
``grad_reduce = "mean"`` (rho's gradient averaged over the T*B axis, as the reference; ``"sum"``
sums). The ``+1e-3`` keeps the derivative finite at p = 1, where the clamp passes no gradient. ``rho`` takes no weight decay (its own optimiser, section 4: listed in ``no_weight_decay``).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from snnbench.errors import SnnbenchError

LOW, HIGH = 0.1, 1.0
REDUCTIONS = ("mean", "sum")
SIGNS = {"reference": -1.0, "analytic": 1.0}


class RelaxedBernoulli(torch.autograd.Function):
    """Hard sample ``m = 1[logit(p) + l >= 0]`` with the relaxed straight-through derivative in p."""

    @staticmethod
    def forward(
        ctx,
        p: torch.Tensor,
        noise: torch.Tensor,
        temperature: float,  # type: ignore[override]
        reduce: str,
        sign: float = -1.0,
    ) -> torch.Tensor:
        score = torch.logit(p) + noise  # +inf where p = 1 (noise is finite): m = 1
        ctx.save_for_backward(p, score)
        ctx.temperature, ctx.reduce, ctx.sign = temperature, reduce, sign
        return (score >= 0).to(p.dtype)

    @staticmethod
    def backward(ctx, grad_m: torch.Tensor):  # type: ignore[override]
        p, score = ctx.saved_tensors
        tau = ctx.temperature
        sig = torch.sigmoid(score / tau)  # 1 where score = +inf: derivative 0, no NaN
        dm_dp = ctx.sign * sig * (1 - sig) / (tau * p * (1 - p + 1e-3))
        grad = grad_m * dm_dp
        grad = grad.mean(0) if ctx.reduce == "mean" else grad.sum(0)
        return grad, None, None, None, None


class StoGGate(nn.Module):
    """Multiplies spikes ``[T*B, *shape]`` by Bernoulli(clamp(rho, 0.1, 1)) gates, rho learnable."""

    no_weight_decay: ClassVar[tuple[str, ...]] = ("rho",)

    def __init__(
        self,
        shape: tuple[int, ...],
        timesteps: int,
        *,
        temperature: float = 0.5,
        grad_reduce: str = "mean",
        grad_sign: str = "reference",
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise SnnbenchError(f"stog.temperature must be positive, got {temperature}")
        if grad_reduce not in REDUCTIONS:
            raise SnnbenchError(f"stog.grad_reduce must be 'mean' or 'sum', got {grad_reduce!r}")
        if grad_sign not in SIGNS:
            raise SnnbenchError(
                f"stog.grad_sign must be 'reference' or 'analytic', got {grad_sign!r}"
            )
        self.shape = tuple(shape)
        self.timesteps = timesteps
        self.temperature = float(temperature)
        self.grad_reduce = grad_reduce
        self.grad_sign = grad_sign
        self.rho = nn.Parameter(torch.ones(self.shape))
        self.mean_field = False  # the mean twin's gate: s * p instead of s * m (no draws)

    @property
    def stochastic(self) -> bool:
        """Gates draw in training and evaluation alike, unless set to their mean."""
        return not self.mean_field

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, T={self.timesteps}, temperature={self.temperature}, "
            f"grad_reduce={self.grad_reduce}, grad_sign={self.grad_sign}"
        )

    def keep_probability(self) -> torch.Tensor:
        """``p = clamp(rho, 0.1, 1)``, passing gradient to rho only where 0.1 < rho < 1."""
        rho = self.rho
        inside = (rho > LOW) & (rho < HIGH)
        return torch.where(inside, rho, rho.detach().clamp(LOW, HIGH))

    def logistic_noise(self, shape: torch.Size) -> torch.Tensor:
        """``l = log(U / (1 - U))`` with U in (0, 1): always finite."""
        rho = self.rho
        u = torch.rand(shape, dtype=rho.dtype, device=rho.device)
        u = u.clamp_(min=torch.finfo(rho.dtype).tiny)
        return torch.log(u) - torch.log1p(-u)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if tuple(s.shape[1:]) != self.shape or s.shape[0] % self.timesteps:
            raise SnnbenchError(
                f"StoG gate expects [T*B, {', '.join(map(str, self.shape))}] with "
                f"T = {self.timesteps}, got {list(s.shape)}"
            )
        p = self.keep_probability()
        if self.mean_field:
            return s * p.to(s.dtype)
        noise = self.logistic_noise(s.shape)
        m = RelaxedBernoulli.apply(
            p, noise, self.temperature, self.grad_reduce, SIGNS[self.grad_sign]
        )
        return s * m.to(s.dtype)


class GatedNeuron(nn.Module):
    """A spiking neuron followed by its StoG gate; ``neuron`` is found by ``spiking_neurons``."""

    def __init__(self, neuron: nn.Module, gate: StoGGate) -> None:
        super().__init__()
        self.neuron = neuron
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.neuron(x))


def gated_factory(
    factory: Callable[[tuple[int, ...]], nn.Module], timesteps: int, **options: Any
) -> Callable[[tuple[int, ...]], nn.Module]:
    """Wrap a neuron factory so that every neuron it builds is followed by a StoG gate.

    ``options`` go to ``StoGGate`` (``temperature``, ``grad_reduce``, ``grad_sign``); archs need
    no change.
    """

    def make(shape: tuple[int, ...]) -> nn.Module:
        return GatedNeuron(factory(shape), StoGGate(tuple(shape), timesteps, **options))

    return make
