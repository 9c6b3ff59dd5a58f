"""``randhet`` and ``randhet*``: random heterogeneous time constants (Wang et al., "Random
heterogeneous spiking neural network for adversarial defense", iScience 2025; BrainCog
``RHLIFNode`` / ``RHLIFNode2``; docs/defenses.md).

``k = sigmoid(sigma * eps)``, ``eps ~ N(0, 1)``: drawn per sample, neuron and time step
(randhet) or once per forward call per sample and neuron, held over the T steps (randhet*,
alias ``randhet-star``). sigma = 1.0 (code default; the paper calls it "variance"; not learnable,
learning it collapses it to 0). Random in training, attack and evaluation. On the randhet track
the charge is BrainCog's convex form; on the tgo track the tet form is kept and only k is random
(RECONSTRUCTED). Table 1 (SEW-ResNet19, T = 8, CIFAR-10 RAT, clean / MRA): SNN 89.55 / 30.36,
RandHet 90.25 / 44.86, RandHet* 89.88 / 46.04.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from snnbench.config import NeuronConfig
from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES
from snnbench.neurons import NeuronFactory, neuron_factory


@dataclass(frozen=True)
class RandHetSettings:
    sigma: float = 1.0


class _RandomDecay(Defense):
    prefix = "randhet"
    slot = "neuron"
    settings_cls = RandHetSettings
    per_step = True

    def neuron_factory(self, config: NeuronConfig, timesteps: int) -> NeuronFactory | None:
        return neuron_factory(
            dataclasses.replace(config, kind="randhet"),
            timesteps,
            sigma=self.settings.sigma,
            per_step=self.per_step,
        )

    def stochastic(self) -> bool:
        return self.settings.sigma > 0


@DEFENSES.register(
    "randhet",
    summary="random decays sigmoid(s*eps), a fresh draw per time step",
    paper="Wang et al. iScience 2025 (RandHet); BrainCog RHLIFNode",
)
class RandHet(_RandomDecay):
    name = "randhet"
    per_step = True


@DEFENSES.register(
    "randhet*",
    summary="random decays drawn once per forward, held over T",
    paper="Wang et al. iScience 2025 (RandHet*); BrainCog RHLIFNode2",
    aliases=("randhet-star",),
)
class RandHetStar(_RandomDecay):
    name = "randhet*"
    per_step = False
