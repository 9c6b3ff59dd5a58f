"""Het: LIF with learnable heterogeneous decays (docs/defenses.md).

Paper: Wang et al., "Random heterogeneous spiking neural network for adversarial defense"
(RandHet; BrainCog-X/Brain-Cog ``examples/Snn_safety``), ablation "time constants as trainable
parameters, following Xu et al."; SpikingJelly's PLIF learns one such logit per layer.

    k = sigmoid(w)
    tet form    u_t = k v_{t-1} + I_t
    convex form u_t = k v_{t-1} + (1-k) I_t          (the track's ``neuron.form``)

spike and reset as the track's LIF. Deterministic. RECONSTRUCTED defaults: ``granularity =
"neuron"`` (one logit per neuron, the neuron shape ``(C, H, W)`` or ``(features,)``; ``"channel"``:
``(C, 1, 1)`` or ``(features,)``; ``"layer"``: one scalar), init ``w = 0`` (k = 0.5, the track's
LIF at init, bit for bit), no weight decay on ``w`` (listed in ``no_weight_decay``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons.lif import LIF, FusedInputs

GRANULARITIES = ("neuron", "channel", "layer")


def logit_shape(shape: tuple[int, ...], granularity: str) -> tuple[int, ...]:
    """The shape of Het's decay logits for neurons of ``shape`` at ``granularity``."""
    if granularity == "neuron":
        return tuple(shape)
    if granularity == "layer":
        return ()
    if granularity == "channel":
        if not shape:
            raise SnnbenchError(
                "het.granularity 'channel' needs the neuron shape (C, H, W) or "
                "(features,); build the neuron through neuron_factory"
            )
        return (shape[0],) + (1,) * (len(shape) - 1)
    raise SnnbenchError(
        f"het.granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
    )


class HetLIF(LIF):
    """LIF whose decay ``k = sigmoid(decay_logit)`` is learned per neuron, channel or layer."""

    no_weight_decay: ClassVar[tuple[str, ...]] = ("decay_logit",)

    def __init__(
        self,
        config: NeuronConfig,
        timesteps: int,
        shape: tuple[int, ...] = (),
        *,
        granularity: str = "neuron",
    ) -> None:
        super().__init__(config, timesteps, shape)
        self.granularity = granularity
        self.decay_logit = nn.Parameter(torch.zeros(logit_shape(self.shape, granularity)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, granularity={self.granularity}"

    @property
    def decay(self) -> torch.Tensor:
        """The current decays ``k = sigmoid(w)``, each in (0, 1)."""
        return torch.sigmoid(self.decay_logit)

    def fused_inputs(self, steps: torch.Tensor) -> FusedInputs:
        return FusedInputs(decay=self.decay.to(steps.dtype))

    def charge(self, v: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
        k = self.decay.to(current.dtype)
        if self.config.form == "convex":
            return k * v + (1 - k) * current
        return k * v + current
