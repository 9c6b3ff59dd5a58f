"""``dlif``: dynamically stable LIF neurons (Ding et al., "Robust Stable Spiking Neural
Networks", ICML 2024, arXiv 2405.20694; DingJianhao/stable-snn, MIT; docs/defenses.md).

Neuron ``u_t = k v_{t-1} + p_t I_t`` with ``p`` learnable per layer and step (init 1). Training
needs a perturbed batch x~: the generator's output when composed (``dlif+at``, ``dlif+rat``),
otherwise ``x + N(0, (8/255)^2)``, not clipped to [0, 1], as the reference's Gaussian mode
(``dlif.perturb = gaussian``; RECONSTRUCTED mapping of TGO's "DLIF under BPTT" row). Task loss ``kappa CE(f(x)) + (1 - kappa) CE(f(x~))``, kappa = 0.5.
Penalty at the last spiking layer: ``Delta_t = I_t(x) - I_t(x~)`` (clean current detached),
``Y_t = k Y_{t-1} + Delta_t``, ``L_ly = mean(Y^2)`` over t, batch and neurons, weight 1.
k = 0.99 (``dlif.decay``), the paper's and the reference's value on every track; it also sets the
penalty's memory. A negative ``dlif.decay`` takes the track's ``neuron.decay`` instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snnbench.config import NeuronConfig
from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES
from snnbench.errors import SnnbenchError
from snnbench.neurons import NeuronFactory, neuron_factory, spiking_neurons


@dataclass(frozen=True)
class DLIFSettings:
    decay: float = 0.99  # the paper's k; < 0: the track's neuron.decay
    kappa: float = 0.5
    penalty: float = 1.0  # alpha_ly
    perturb: str = "gaussian"  # gaussian | none (without a generator)
    noise_std: float = 8 / 255

    def __post_init__(self) -> None:
        if self.perturb not in ("gaussian", "none"):
            raise SnnbenchError(f"dlif.perturb must be gaussian or none, got {self.perturb!r}")


def leaky_penalty(
    clean: list[torch.Tensor], perturbed: list[torch.Tensor], decay: float
) -> torch.Tensor:
    """``mean_t mean(Y_t^2)``, ``Y_t = k Y_{t-1} + (I_t(x) - I_t(x~))``, clean side detached."""
    y = torch.zeros_like(perturbed[0])
    total = perturbed[0].new_zeros(())
    for c, p in zip(clean, perturbed):
        y = decay * y + (c.detach() - p)
        total = total + (y.float() ** 2).mean()
    return total / len(perturbed)


@DEFENSES.register(
    "dlif",
    summary="LIF with learnable per-step input gains + leaky current-difference penalty",
    paper="Ding et al. ICML 2024, arXiv 2405.20694",
)
class DLIF(Defense):
    name = "dlif"
    prefix = "dlif"
    slot = "neuron"
    settings_cls = DLIFSettings

    def _decay(self, config: NeuronConfig) -> float:
        return config.decay if self.settings.decay < 0 else self.settings.decay

    def neuron_factory(self, config: NeuronConfig, timesteps: int) -> NeuronFactory | None:
        return neuron_factory(
            dataclasses.replace(config, kind="dlif"), timesteps, decay=self._decay(config)
        )

    def setup(self, model: torch.nn.Module) -> None:
        spiking_neurons(model)[-1].record_currents = True

    def task_loss(self, ctx: LossContext) -> torch.Tensor | None:
        s = self.settings
        last = spiking_neurons(ctx.model)[-1]
        first = list(last.currents)
        if ctx.x_in is not ctx.x:  # a generator made x_in: it is x~
            logits_tilde, tilde = ctx.logits, first
            logits_clean, clean = ctx.model(ctx.x), list(last.currents)
        else:
            logits_clean, clean = ctx.logits, first
            if s.perturb == "none":
                return F.cross_entropy(logits_clean.float(), ctx.y)
            # unclipped, as the reference's Gaussian mode
            x_tilde = ctx.x + s.noise_std * torch.randn_like(ctx.x)
            logits_tilde, tilde = ctx.model(x_tilde), list(last.currents)
        task = s.kappa * F.cross_entropy(logits_clean.float(), ctx.y) + (
            1 - s.kappa
        ) * F.cross_entropy(logits_tilde.float(), ctx.y)
        return task + s.penalty * leaky_penalty(clean, tilde, last.decay)
