"""``het``: learnable heterogeneous time constants, ``k = sigmoid(w)`` per neuron (the RandHet
paper's ablation, "following Xu et al."; docs/defenses.md). RECONSTRUCTED: per-neuron
logits (``het.granularity = neuron | channel | layer``), init w = 0 (k = 0.5, the track LIF at
init), no weight decay on w. Deterministic. RandHet Table 7 (CIFAR-10, RAT, clean / MRA):
Het 89.38 / 26.51 against the SNN's 89.55 / 26.44: heterogeneity alone does not help.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from snnbench.config import NeuronConfig
from snnbench.defenses.base import Defense
from snnbench.defenses.registry import DEFENSES
from snnbench.neurons import NeuronFactory, neuron_factory


@dataclass(frozen=True)
class HetSettings:
    granularity: str = "neuron"  # neuron | channel | layer


@DEFENSES.register(
    "het",
    summary="learnable per-neuron decays k = sigmoid(w), init 0.5",
    paper="Wang et al. iScience 2025 (RandHet), ablation",
)
class Het(Defense):
    name = "het"
    prefix = "het"
    slot = "neuron"
    settings_cls = HetSettings

    def neuron_factory(self, config: NeuronConfig, timesteps: int) -> NeuronFactory | None:
        return neuron_factory(
            dataclasses.replace(config, kind="het"),
            timesteps,
            granularity=self.settings.granularity,
        )

    def no_decay_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for name, p in model.named_parameters() if name.endswith("decay_logit")]
